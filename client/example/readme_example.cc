// The example program from README.md ("Using the client library"). A test builds and runs
// it against a real node, so the README's example always compiles and works.
//
//   readme_example HOST:PORT
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "ring/client.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 64;
  }
  ring::ClientOptions options;
  options.seeds = {argv[1]};
  std::unique_ptr<ring::Client> client;
  ring::Status s = ring::Client::Open(options, &client);
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", s.ToString().c_str());
    return 1;
  }

  s = client->Put("greeting", "hello, ring");
  if (!s.ok()) {
    std::fprintf(stderr, "put: %s\n", s.ToString().c_str());
    return 1;
  }

  std::string value;
  s = client->Get("greeting", &value);
  if (s.IsNotFound()) {
    std::printf("greeting: not found\n");
  } else if (!s.ok()) {
    std::fprintf(stderr, "get: %s\n", s.ToString().c_str());
    return 1;
  } else {
    std::printf("greeting = %s\n", value.c_str());
  }

  // Atomically bump a counter: retry the compare-and-set until no one else raced us.
  for (;;) {
    std::string current;
    s = client->Get("visits", &current);
    if (!s.ok() && !s.IsNotFound()) return 1;
    std::optional<std::string_view> expected;
    if (s.ok()) expected = current;
    std::string next = std::to_string((s.ok() ? std::stoll(current) : 0) + 1);
    ring::CasResult cas;
    s = client->CompareAndSet("visits", expected, next, &cas);
    if (!s.ok()) return 1;
    if (cas.swapped) {
      std::printf("visits = %s\n", next.c_str());
      break;
    }
  }

  // Asynchronous calls take a callback that runs on the client's I/O thread.
  std::promise<void> done;
  client->PutAsync("async-key", "v", [&done](ring::Status st) {
    std::printf("async put: %s\n", st.ToString().c_str());
    done.set_value();
  });
  done.get_future().wait();
  return 0;
}
