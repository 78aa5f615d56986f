// Tests for common/frame.{h,cc}: the 4-byte big-endian length prefix, incremental
// reassembly across arbitrary splits, the payload limit, and buffer compaction.
#include "common/frame.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ring {
namespace {

std::string Frame(const std::string& payload) {
  std::string out;
  AppendFrameHeader(&out, static_cast<uint32_t>(payload.size()));
  out += payload;
  return out;
}

std::string RawHeader(uint32_t len) {
  std::string out;
  AppendFrameHeader(&out, len);
  return out;
}

// Pulls every complete frame, copying each payload before the next call (a returned view
// is only valid until then). Fails the test on an error.
std::vector<std::string> Drain(FrameReader* reader) {
  std::vector<std::string> frames;
  while (true) {
    auto next = reader->Next();
    REQUIRE(next.ok());
    if (!next->has_value()) break;
    frames.emplace_back(**next);
  }
  return frames;
}

// Payloads of varied sizes, including empty ones and bytes that look like headers.
std::vector<std::string> SamplePayloads() {
  return {"a",
          "",
          "hello world",
          std::string(300, 'x'),
          std::string("\0\0\0\5", 4),
          "",
          std::string(70000, 'y'),
          "last"};
}

std::string Concat(const std::vector<std::string>& payloads) {
  std::string stream;
  for (const std::string& p : payloads) stream += Frame(p);
  return stream;
}

}  // namespace

TEST_CASE("a frame header is the payload length as 4 big-endian bytes", "[frame]") {
  CHECK(RawHeader(0) == std::string("\0\0\0\0", 4));
  CHECK(RawHeader(5) == std::string("\0\0\0\5", 4));
  CHECK(RawHeader(0x01020304) == "\x01\x02\x03\x04");
  CHECK(RawHeader(0xFFFFFFFF) == "\xFF\xFF\xFF\xFF");
  std::string out = "prefix";
  AppendFrameHeader(&out, 0x80);
  CHECK(out == std::string("prefix\0\0\0\x80", 10));
}

TEST_CASE("an empty reader has no frame and nothing buffered", "[frame]") {
  FrameReader reader;
  auto next = reader.Next();
  REQUIRE(next.ok());
  CHECK_FALSE(next->has_value());
  CHECK(reader.buffered() == 0);
}

TEST_CASE("a partial header yields no frame until the rest arrives", "[frame]") {
  FrameReader reader;
  std::string f = Frame("abc");
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) {
    reader.Feed(f.substr(i, 1));
    auto next = reader.Next();
    REQUIRE(next.ok());
    CHECK_FALSE(next->has_value());
    CHECK(reader.buffered() == i + 1);
  }
  reader.Feed(f.substr(kFrameHeaderBytes));
  CHECK(Drain(&reader) == std::vector<std::string>{"abc"});
}

TEST_CASE("many frames in one feed come out in order", "[frame]") {
  std::vector<std::string> payloads = SamplePayloads();
  FrameReader reader;
  reader.Feed(Concat(payloads));
  CHECK(Drain(&reader) == payloads);
  CHECK(reader.buffered() == 0);
}

TEST_CASE("a zero-length frame is a frame with an empty payload", "[frame]") {
  FrameReader reader;
  reader.Feed(Frame(""));
  auto next = reader.Next();
  REQUIRE(next.ok());
  REQUIRE(next->has_value());
  CHECK((*next)->empty());
  CHECK(reader.buffered() == 0);
  auto after = reader.Next();
  REQUIRE(after.ok());
  CHECK_FALSE(after->has_value());
}

TEST_CASE("a frame split at every byte boundary is reassembled", "[frame]") {
  std::vector<std::string> payloads = {"first", "", "third frame", std::string(40, 'z')};
  std::string stream = Concat(payloads);
  for (size_t split = 0; split <= stream.size(); ++split) {
    INFO("split at " << split);
    FrameReader reader;
    std::vector<std::string> got;
    reader.Feed(stream.substr(0, split));
    for (std::string& f : Drain(&reader)) got.push_back(std::move(f));
    reader.Feed(stream.substr(split));
    for (std::string& f : Drain(&reader)) got.push_back(std::move(f));
    CHECK(got == payloads);
    CHECK(reader.buffered() == 0);
  }
}

TEST_CASE("a stream fed one byte at a time is reassembled", "[frame]") {
  std::vector<std::string> payloads = SamplePayloads();
  std::string stream = Concat(payloads);
  FrameReader reader;
  std::vector<std::string> got;
  for (char c : stream) {
    reader.Feed(std::string_view(&c, 1));
    for (std::string& f : Drain(&reader)) got.push_back(std::move(f));
  }
  CHECK(got == payloads);
  CHECK(reader.buffered() == 0);
}

TEST_CASE("a frame of exactly the limit is accepted", "[frame]") {
  SECTION("a small limit") {
    FrameReader reader(16);
    std::string payload(16, 'm');
    reader.Feed(Frame(payload));
    CHECK(Drain(&reader) == std::vector<std::string>{payload});
  }
  SECTION("the default 8 MiB limit") {
    FrameReader reader;
    std::string payload(kMaxFrameBytes, 'm');
    payload.back() = 'e';
    reader.Feed(Frame(payload));
    auto next = reader.Next();
    REQUIRE(next.ok());
    REQUIRE(next->has_value());
    CHECK((*next)->size() == kMaxFrameBytes);
    CHECK((*next)->back() == 'e');
  }
}

TEST_CASE("a frame one byte over the limit is InvalidArgument naming the limit", "[frame]") {
  SECTION("a small limit") {
    FrameReader reader(16);
    reader.Feed(Frame(std::string(17, 'm')));
    auto next = reader.Next();
    REQUIRE_FALSE(next.ok());
    CHECK(next.status().IsInvalidArgument());
    CHECK(next.status().message() == "frame of 17 bytes exceeds the 16-byte limit");
  }
  SECTION("the default 8 MiB limit, rejected from the header alone") {
    // The payload never arrives: the reader must not wait for (or reserve) 8 MiB + 1.
    FrameReader reader;
    reader.Feed(RawHeader(static_cast<uint32_t>(kMaxFrameBytes + 1)));
    auto next = reader.Next();
    REQUIRE_FALSE(next.ok());
    CHECK(next.status().IsInvalidArgument());
    CHECK(next.status().message() == "frame of 8388609 bytes exceeds the 8388608-byte limit");
  }
  SECTION("the largest representable length") {
    FrameReader reader;
    reader.Feed(RawHeader(0xFFFFFFFF));
    auto next = reader.Next();
    REQUIRE_FALSE(next.ok());
    CHECK(next.status().message() == "frame of 4294967295 bytes exceeds the 8388608-byte limit");
  }
}

TEST_CASE("an oversized frame after good frames fails only when reached, then stays failed",
          "[frame]") {
  FrameReader reader(8);
  reader.Feed(Frame("ok1") + Frame("ok2") + RawHeader(9) + "tail");
  for (const char* want : {"ok1", "ok2"}) {
    auto next = reader.Next();
    REQUIRE(next.ok());
    REQUIRE(next->has_value());
    CHECK(**next == want);
  }
  for (int i = 0; i < 3; ++i) {
    auto next = reader.Next();
    CHECK(next.status().IsInvalidArgument());
  }
  reader.Feed(Frame("more"));
  CHECK(reader.Next().status().IsInvalidArgument());
}

TEST_CASE("random garbage never crashes and never yields a frame over the limit", "[frame]") {
  std::mt19937_64 rng(20240611);
  for (int round = 0; round < 300; ++round) {
    const size_t limit = std::uniform_int_distribution<size_t>(0, 64)(rng);
    std::string garbage(std::uniform_int_distribution<size_t>(0, 600)(rng), '\0');
    for (char& c : garbage) {
      // Mostly small bytes, so plausible short lengths show up in the headers.
      c = static_cast<char>(rng() % 4 == 0 ? rng() : rng() % 24);
    }
    FrameReader reader(limit);
    size_t fed = 0;
    size_t consumed = 0;
    bool failed = false;
    while (fed < garbage.size() && !failed) {
      size_t chunk = std::min<size_t>(garbage.size() - fed, rng() % 50);
      reader.Feed(std::string_view(garbage).substr(fed, chunk));
      fed += chunk;
      while (true) {
        auto next = reader.Next();
        if (!next.ok()) {
          CHECK(next.status().IsInvalidArgument());
          failed = true;
          break;
        }
        if (!next->has_value()) break;
        REQUIRE((*next)->size() <= limit);
        // The payload is exactly the bytes after its header in the stream.
        REQUIRE(garbage.compare(consumed + kFrameHeaderBytes, (*next)->size(), **next) == 0);
        consumed += kFrameHeaderBytes + (*next)->size();
      }
      // Every fed byte is either returned (with its header) or still buffered.
      REQUIRE(consumed + reader.buffered() == fed);
    }
  }
}

TEST_CASE("buffered counts only bytes not yet returned as a frame", "[frame]") {
  FrameReader reader;
  std::string f1 = Frame("0123456789");  // 14 bytes
  std::string f2 = Frame("abcdef");      // 10 bytes
  reader.Feed(f1 + f2.substr(0, 7));
  CHECK(reader.buffered() == 21);

  auto first = reader.Next();
  REQUIRE(first.ok());
  REQUIRE(first->has_value());
  CHECK(**first == "0123456789");
  CHECK(reader.buffered() == 7);

  // This call compacts (the consumed 14 bytes are most of the 21) and finds f2 incomplete.
  auto second = reader.Next();
  REQUIRE(second.ok());
  CHECK_FALSE(second->has_value());
  CHECK(reader.buffered() == 7);

  reader.Feed(f2.substr(7));
  CHECK(reader.buffered() == 10);
  CHECK(Drain(&reader) == std::vector<std::string>{"abcdef"});
  CHECK(reader.buffered() == 0);
}

TEST_CASE("frames survive compaction when the consumed prefix is still small", "[frame]") {
  // One small frame followed by a large one: after the first Next() the consumed prefix is
  // far below half the buffer, so the reader must serve the second frame from an offset.
  FrameReader reader;
  std::string big(1000, 'B');
  reader.Feed(Frame("s") + Frame(big) + Frame("t").substr(0, 2));
  std::vector<std::string> got = Drain(&reader);
  CHECK(got == std::vector<std::string>{"s", big});
  CHECK(reader.buffered() == 2);
  reader.Feed(Frame("t").substr(2));
  CHECK(Drain(&reader) == std::vector<std::string>{"t"});
}

TEST_CASE("a long stream with a frame always pending keeps buffered bounded", "[frame]") {
  // Each read completes one frame and starts the next, the pattern of a busy connection.
  FrameReader reader;
  std::string stream;
  for (int i = 0; i < 2000; ++i) stream += Frame("payload-" + std::to_string(i));
  size_t pos = 0;
  int count = 0;
  size_t max_buffered = 0;
  while (pos < stream.size()) {
    size_t chunk = std::min<size_t>(stream.size() - pos, 23);
    reader.Feed(std::string_view(stream).substr(pos, chunk));
    pos += chunk;
    while (true) {
      auto next = reader.Next();
      REQUIRE(next.ok());
      if (!next->has_value()) break;
      REQUIRE(**next == "payload-" + std::to_string(count));
      ++count;
    }
    max_buffered = std::max(max_buffered, reader.buffered());
  }
  CHECK(count == 2000);
  CHECK(reader.buffered() == 0);
  CHECK(max_buffered < 23 + 4 + 16);
}

}  // namespace ring
