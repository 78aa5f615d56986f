// Tests for common/json.{h,cc}: RFC 8259 string escaping (including bytes that are not
// UTF-8) and JsonWriter's nesting and commas.
#include "common/json.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace ring {
namespace {

std::string Quote(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

// Strict UTF-8 validation after the Unicode Standard, Table 3-7 (well-formed byte
// sequences): no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto in = [](unsigned char b, unsigned char lo, unsigned char hi) { return b >= lo && b <= hi; };
  while (i < s.size()) {
    unsigned char c = byte(i);
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c < 0x80) {
      n = 1;
    } else if (in(c, 0xC2, 0xDF)) {
      n = 2;
    } else if (c == 0xE0) {
      n = 3, lo = 0xA0;
    } else if (in(c, 0xE1, 0xEC) || in(c, 0xEE, 0xEF)) {
      n = 3;
    } else if (c == 0xED) {
      n = 3, hi = 0x9F;
    } else if (c == 0xF0) {
      n = 4, lo = 0x90;
    } else if (in(c, 0xF1, 0xF3)) {
      n = 4;
    } else if (c == 0xF4) {
      n = 4, hi = 0x8F;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    if (n > 1 && !in(byte(i + 1), lo, hi)) return false;
    for (size_t k = 2; k < n; ++k) {
      if (!in(byte(i + k), 0x80, 0xBF)) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

TEST_CASE("plain ASCII is quoted unchanged", "[json]") {
  CHECK(Quote("") == "\"\"");
  CHECK(Quote("hello, world 123 ~!@#$%^&*()") == "\"hello, world 123 ~!@#$%^&*()\"");
  CHECK(Quote("/") == "\"/\"");  // solidus need not be escaped
}

TEST_CASE("quotes and backslashes are escaped", "[json]") {
  CHECK(Quote("say \"hi\"") == R"("say \"hi\"")");
  CHECK(Quote("C:\\dir") == R"("C:\\dir")");
  CHECK(Quote("\\\"") == R"("\\\"")");
}

TEST_CASE("control characters are escaped", "[json]") {
  // RFC 8259 section 7: U+0000 through U+001F must be escaped.
  CHECK(Quote("a\nb\rc\td") == R"("a\nb\rc\td")");
  CHECK(Quote(std::string("\0", 1)) == R"("\u0000")");
  CHECK(Quote("\x01\x08\x0c\x1f") == R"("\u0001\u0008\u000c\u001f")");
  CHECK(Quote("\x7f") == R"("\u007f")");
  for (int c = 0; c < 0x20; ++c) {
    std::string q = Quote(std::string(1, static_cast<char>(c)));
    INFO("byte " << c << " -> " << q);
    CHECK(q.size() > 3);
    CHECK(q[1] == '\\');
  }
}

TEST_CASE("valid multi-byte UTF-8 passes through unescaped", "[json]") {
  CHECK(Quote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");            // U+00E9
  CHECK(Quote("\xe2\x82\xac 5") == "\"\xe2\x82\xac 5\"");      // U+20AC
  CHECK(Quote("\xf0\x9f\x98\x80") == "\"\xf0\x9f\x98\x80\"");  // U+1F600
  CHECK(Quote("\xc2\x80") == "\"\xc2\x80\"");                  // U+0080, smallest 2-byte
  CHECK(Quote("\xef\xbf\xbf") == "\"\xef\xbf\xbf\"");          // U+FFFF
  CHECK(Quote("\xf4\x8f\xbf\xbf") == "\"\xf4\x8f\xbf\xbf\"");  // U+10FFFF, the largest
  CHECK(Quote("\xed\x9f\xbf") == "\"\xed\x9f\xbf\"");          // U+D7FF, below surrogates
}

TEST_CASE("bytes that are not UTF-8 are escaped one by one", "[json]") {
  CHECK(Quote("\x80") == R"("\u0080")");                  // lone continuation byte
  CHECK(Quote("\xff\xfe") == R"("\u00ff\u00fe")");        // never valid
  CHECK(Quote("a\xc3") == R"("a\u00c3")");                // truncated at the end
  CHECK(Quote("\xe2\x82x") == R"("\u00e2\u0082x")");      // truncated mid-string
  CHECK(Quote("\xc3\xc3\xa9") == "\"\\u00c3\xc3\xa9\"");  // bad lead, then a good pair
}

TEST_CASE("overlong, surrogate and out-of-range sequences are escaped", "[json]") {
  // Reference: RFC 3629 section 3 and section 10; these are not UTF-8 even though their
  // bytes have the right shape, and strict JSON parsers reject them.
  CHECK(Quote("\xc0\x80") == R"("\u00c0\u0080")");                      // overlong U+0000
  CHECK(Quote("\xc1\xbf") == R"("\u00c1\u00bf")");                      // overlong U+007F
  CHECK(Quote("\xe0\x80\xaf") == R"("\u00e0\u0080\u00af")");            // overlong '/'
  CHECK(Quote("\xed\xa0\x80") == R"("\u00ed\u00a0\u0080")");            // U+D800 surrogate
  CHECK(Quote("\xf0\x80\x80\xaf") == R"("\u00f0\u0080\u0080\u00af")");  // overlong '/'
  CHECK(Quote("\xf4\x90\x80\x80") == R"("\u00f4\u0090\u0080\u0080")");  // U+110000
  CHECK(Quote("\xf5\x80\x80\x80") == R"("\u00f5\u0080\u0080\u0080")");
  CHECK(Quote("\xf8\x88\x80\x80\x80") == R"("\u00f8\u0088\u0080\u0080\u0080")");  // 5-byte
}

TEST_CASE("any byte string becomes a valid UTF-8 JSON string", "[json]") {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 3000; ++round) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) {
      // Bias towards the bytes that start and continue multi-byte sequences.
      uint64_t r = rng();
      c = static_cast<char>(r % 3 == 0 ? 0x80 | (r >> 8) : r >> 8);
    }
    std::string q = Quote(s);
    INFO("round " << round);
    REQUIRE(IsValidUtf8(q));
    REQUIRE(q.front() == '"');
    REQUIRE(q.back() == '"');
    // Inside the quotes: no raw control byte, and every quote is escaped.
    for (size_t i = 1; i + 1 < q.size(); ++i) {
      REQUIRE(static_cast<unsigned char>(q[i]) >= 0x20);
      if (q[i] == '\\') {
        ++i;  // skip the escaped character
      } else {
        REQUIRE(q[i] != '"');
      }
    }
  }
}

TEST_CASE("empty objects and arrays print as braces and brackets", "[json]") {
  CHECK(JsonWriter().BeginObject().EndObject().str() == "{}");
  CHECK(JsonWriter().BeginArray().EndArray().str() == "[]");
}

TEST_CASE("object members are separated by commas", "[json]") {
  JsonWriter w;
  w.BeginObject();
  w.Key("ok").Bool(true);
  w.Key("code").String("NotFound");
  w.Key("n").Int(-3);
  w.Key("u").Uint(7);
  w.Key("none").Null();
  w.EndObject();
  CHECK(w.str() == R"({"ok":true,"code":"NotFound","n":-3,"u":7,"none":null})");
}

TEST_CASE("nested objects and arrays get commas only between siblings", "[json]") {
  JsonWriter w;
  w.BeginObject();
  w.Key("a").BeginArray().Int(1).BeginArray().Int(2).Int(3).EndArray().Int(4).EndArray();
  w.Key("b").BeginObject().Key("c").BeginObject().EndObject().Key("d").BeginArray().EndArray();
  w.EndObject();
  w.Key("e").BeginArray();
  w.BeginObject().Key("x").Bool(false).EndObject();
  w.BeginObject().EndObject();
  w.EndArray();
  w.EndObject();
  CHECK(w.str() == R"({"a":[1,[2,3],4],"b":{"c":{},"d":[]},"e":[{"x":false},{}]})");
}

TEST_CASE("keys and string values are escaped", "[json]") {
  JsonWriter w;
  w.BeginObject().Key("k\"1\n").String("v\\\x01\xff").EndObject();
  CHECK(w.str() == R"({"k\"1\n":"v\\\u0001\u00ff"})");
}

TEST_CASE("integers keep their full range", "[json]") {
  JsonWriter w;
  w.BeginArray();
  w.Int(std::numeric_limits<int64_t>::min());
  w.Int(std::numeric_limits<int64_t>::max());
  w.Uint(std::numeric_limits<uint64_t>::max());
  w.Int(0);
  w.EndArray();
  CHECK(w.str() == "[-9223372036854775808,9223372036854775807,18446744073709551615,0]");
}

TEST_CASE("doubles print exactly and non-finite ones become null", "[json]") {
  JsonWriter w;
  w.BeginArray();
  w.Double(0.5).Double(-2).Double(1e21).Double(1234567.0);
  w.Double(std::nan("")).Double(std::numeric_limits<double>::infinity());
  w.Double(-std::numeric_limits<double>::infinity());
  w.EndArray();
  CHECK(w.str() == "[0.5,-2,1e+21,1234567,null,null,null]");
}

}  // namespace ring
