// common/endpoint.h: HOST:PORT parsing for flags, config files and seed lists.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ring {

struct Endpoint {
  std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
  uint16_t port = 0;
  std::string ToString() const;  // brackets IPv6 hosts
  // False for a port of 0 or a wildcard host (0.0.0.0, ::): not an address another node
  // could connect to.
  bool Reachable() const { return port != 0 && !host.empty() && host != "0.0.0.0" && host != "::"; }
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Parses "host:port" or "[v6]:port". Port 0 is allowed only when `allow_port_zero`
// (a listener that lets the OS choose).
Result<Endpoint> ParseEndpoint(std::string_view text, bool allow_port_zero = false);
// Parses a comma-separated list of endpoints; at least one.
Result<std::vector<Endpoint>> ParseEndpointList(std::string_view text);

}  // namespace ring
