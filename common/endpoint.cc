#include "common/endpoint.h"

#include <charconv>

namespace ring {

std::string Endpoint::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> ParseEndpoint(std::string_view text, bool allow_port_zero) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad address \"" + std::string(text) + "\": " + why +
                                   " (expected HOST:PORT)");
  };
  Endpoint ep;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    ep.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("missing port");
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("missing port");
    ep.host = std::string(text.substr(0, colon));
    if (ep.host.find(':') != std::string::npos) return bad("IPv6 hosts need [brackets]");
    port_text = text.substr(colon + 1);
  }
  if (ep.host.empty()) return bad("empty host");
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port_text.empty() ||
      port > 65535) {
    return bad("port must be a number from " + std::string(allow_port_zero ? "0" : "1") +
               " to 65535");
  }
  if (port == 0 && !allow_port_zero) return bad("port must be from 1 to 65535");
  ep.port = static_cast<uint16_t>(port);
  return ep;
}

Result<std::vector<Endpoint>> ParseEndpointList(std::string_view text) {
  std::vector<Endpoint> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view part =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (!part.empty()) {
      ASSIGN_OR_RETURN(Endpoint ep, ParseEndpoint(part));
      out.push_back(std::move(ep));
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (out.empty()) return Status::InvalidArgument("no address given (expected HOST:PORT[,...])");
  return out;
}

}  // namespace ring
