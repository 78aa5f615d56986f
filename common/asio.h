// common/asio.h: standalone Asio as ringstore uses it: C++20 coroutines whose awaited
// operations return (error_code, ...) tuples instead of throwing.
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

namespace ring {

// `auto [ec, n] = co_await socket.async_read_some(buf, kUseTuple);`
// (Asio 1.22, Debian 12's, still keeps as_tuple under experimental.)
inline constexpr auto kUseTuple = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace ring
