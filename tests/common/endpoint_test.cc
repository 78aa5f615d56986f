// Tests for common/endpoint.{h,cc}: HOST:PORT and [v6]:PORT parsing, port bounds, error
// messages, ToString, and comma-separated lists.
#include "common/endpoint.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace ring {
namespace {

Endpoint Ep(std::string host, uint16_t port) {
  Endpoint ep;
  ep.host = std::move(host);
  ep.port = port;
  return ep;
}

}  // namespace

TEST_CASE("an IPv4 address with a port parses", "[endpoint]") {
  Result<Endpoint> r = ParseEndpoint("127.0.0.1:7000");
  REQUIRE(r.ok());
  CHECK(*r == Ep("127.0.0.1", 7000));
}

TEST_CASE("a host name with a port parses", "[endpoint]") {
  Result<Endpoint> r = ParseEndpoint("node-1.example.com:65535");
  REQUIRE(r.ok());
  CHECK(r->host == "node-1.example.com");
  CHECK(r->port == 65535);
  CHECK(ParseEndpoint("localhost:1").value() == Ep("localhost", 1));
}

TEST_CASE("a bracketed IPv6 address with a port parses without the brackets", "[endpoint]") {
  CHECK(ParseEndpoint("[::1]:7000").value() == Ep("::1", 7000));
  CHECK(ParseEndpoint("[fe80::1:2]:80").value() == Ep("fe80::1:2", 80));
}

TEST_CASE("ToString brackets IPv6 hosts and round-trips", "[endpoint]") {
  CHECK(Ep("::1", 7000).ToString() == "[::1]:7000");
  CHECK(Ep("10.0.0.1", 80).ToString() == "10.0.0.1:80");
  for (const char* text : {"[::1]:7000", "10.0.0.1:80", "db.local:6379", "[2001:db8::7]:1"}) {
    INFO(text);
    Result<Endpoint> r = ParseEndpoint(text);
    REQUIRE(r.ok());
    CHECK(r->ToString() == text);
  }
}

TEST_CASE("an address without a port is rejected", "[endpoint]") {
  for (const char* text : {"localhost", "127.0.0.1", "[::1]", "[::1]7000", "localhost:"}) {
    INFO(text);
    Result<Endpoint> r = ParseEndpoint(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().IsInvalidArgument());
  }
  Status s = ParseEndpoint("localhost").status();
  CHECK(s.message() == "bad address \"localhost\": missing port (expected HOST:PORT)");
}

TEST_CASE("port 0 is allowed only when the caller lets the OS choose", "[endpoint]") {
  Result<Endpoint> strict = ParseEndpoint("127.0.0.1:0");
  REQUIRE_FALSE(strict.ok());
  CHECK(strict.status().IsInvalidArgument());
  CHECK(strict.status().message().find("1 to 65535") != std::string::npos);

  Result<Endpoint> listener = ParseEndpoint("127.0.0.1:0", /*allow_port_zero=*/true);
  REQUIRE(listener.ok());
  CHECK(*listener == Ep("127.0.0.1", 0));
  CHECK(ParseEndpoint("[::]:0", true).value() == Ep("::", 0));
}

TEST_CASE("ports above 65535 are rejected", "[endpoint]") {
  CHECK(ParseEndpoint("h:65535").ok());
  for (const char* text : {"h:65536", "h:99999", "h:4294967296", "h:99999999999999999999999"}) {
    INFO(text);
    Result<Endpoint> r = ParseEndpoint(text, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("port must be a number from 0 to 65535") != std::string::npos);
  }
}

TEST_CASE("junk is rejected with a message quoting the input", "[endpoint]") {
  for (const char* text :
       {"", ":", ":7000", "[]:7000", "[::1:7000", "host:abc", "host:-1", "host:+1", "host:80x",
        "host: 80", "host:80 ", "::1:7000", "a:b:c", "[::1]:", "[::1]:x"}) {
    INFO("input \"" << text << "\"");
    Result<Endpoint> r = ParseEndpoint(text, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().IsInvalidArgument());
    CHECK(r.status().message().find("bad address \"" + std::string(text) + "\"") == 0);
    CHECK(r.status().message().find("(expected HOST:PORT)") != std::string::npos);
  }
}

TEST_CASE("unbracketed IPv6 and empty hosts get specific reasons", "[endpoint]") {
  CHECK(ParseEndpoint("::1:7000").status().message().find("IPv6 hosts need [brackets]") !=
        std::string::npos);
  CHECK(ParseEndpoint(":7000").status().message().find("empty host") != std::string::npos);
  CHECK(ParseEndpoint("[]:7000").status().message().find("empty host") != std::string::npos);
  CHECK(ParseEndpoint("[::1:7000").status().message().find("unclosed '['") != std::string::npos);
}

TEST_CASE("a comma-separated list parses in order", "[endpoint]") {
  Result<std::vector<Endpoint>> r = ParseEndpointList("a:1,[::1]:2,10.0.0.3:3");
  REQUIRE(r.ok());
  CHECK(*r == std::vector<Endpoint>{Ep("a", 1), Ep("::1", 2), Ep("10.0.0.3", 3)});
  CHECK(ParseEndpointList("solo:9").value() == std::vector<Endpoint>{Ep("solo", 9)});
}

TEST_CASE("empty parts of a list are skipped", "[endpoint]") {
  for (const char* text : {",a:1,,b:2,", "a:1,b:2,", ",,a:1,b:2"}) {
    INFO(text);
    Result<std::vector<Endpoint>> r = ParseEndpointList(text);
    REQUIRE(r.ok());
    CHECK(*r == std::vector<Endpoint>{Ep("a", 1), Ep("b", 2)});
  }
}

TEST_CASE("a list with no endpoints is rejected", "[endpoint]") {
  for (const char* text : {"", ",", ",,,"}) {
    INFO(text);
    Result<std::vector<Endpoint>> r = ParseEndpointList(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status() == Status::InvalidArgument("no address given (expected HOST:PORT[,...])"));
  }
}

TEST_CASE("one bad entry fails the whole list with that entry's error", "[endpoint]") {
  Result<std::vector<Endpoint>> r = ParseEndpointList("a:1,b,c:3");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("bad address \"b\"") == 0);
  // Lists name peers, never a listener: port 0 is not allowed in them.
  CHECK_FALSE(ParseEndpointList("a:1,b:0").ok());
}

}  // namespace ring
