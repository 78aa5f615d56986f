// libring against real ringd processes: deadlines, failover, lifecycle and misuse.
#include "ring/client.h"

#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "harness.h"

namespace ring::test {
namespace {

using namespace std::chrono_literals;


TEST_CASE("bad client options are refused at Open", "[client]") {
  std::unique_ptr<Client> c;
  ClientOptions o;
  CHECK(Client::Open(o, &c).IsInvalidArgument());
  o.seeds = {"no-port"};
  Status s = Client::Open(o, &c);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("no-port") != std::string::npos);
  o.seeds = {"127.0.0.1:1"};
  o.connections_per_node = 0;
  CHECK(Client::Open(o, &c).IsInvalidArgument());
  o.connections_per_node = 1;
  o.default_timeout = 0ms;
  CHECK(Client::Open(o, &c).IsInvalidArgument());
}

TEST_CASE("calls to an unreachable cluster fail with Unavailable within the deadline", "[client]") {
  auto c = OpenClient({"127.0.0.1:1"}, 400ms);
  auto start = std::chrono::steady_clock::now();
  Status s = c->Put("k", "v");
  auto took = std::chrono::steady_clock::now() - start;
  CHECK((s.IsUnavailable() || s.IsTimeout()));
  CHECK(took < 3s);
  std::string v;
  s = c->Get("k", &v);
  CHECK((s.IsUnavailable() || s.IsTimeout()));
}

TEST_CASE("a stopped node makes calls time out at their deadline, then serves again", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = OpenClient({node.address()});
  REQUIRE(c->Put("k", "v").ok());
  node.process().Signal(SIGSTOP);
  auto start = std::chrono::steady_clock::now();
  std::string v;
  CallOptions call;
  call.timeout = 300ms;
  Status s = c->Get("k", &v, call);
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(s.IsTimeout());
  CHECK(took >= 290ms);
  CHECK(took < 2s);
  s = c->Put("k", "v2", call);
  CHECK(s.IsTimeout());
  CHECK(s.message().find("may or may not") != std::string::npos);
  node.process().Signal(SIGCONT);
  REQUIRE(c->Get("k", &v).ok());
}

TEST_CASE("reads fail over to the next seed when one node is down", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = OpenClient({"127.0.0.1:1", node.address()}, 3000ms);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(c->Put("f" + std::to_string(i), "v").ok());
    std::string v;
    REQUIRE(c->Get("f" + std::to_string(i), &v).ok());
  }
}

TEST_CASE("destroying a client completes every outstanding call", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  std::atomic<int> completed{0};
  {
    auto c = OpenClient({node.address()});
    node.process().Signal(SIGSTOP);  // nothing will be answered
    for (int i = 0; i < 100; ++i) {
      c->GetAsync("k", [&](Status s, std::string) {
        CHECK(s.IsUnavailable());
        completed.fetch_add(1);
      });
    }
    std::this_thread::sleep_for(50ms);
  }
  CHECK(completed.load() == 100);
  node.process().Signal(SIGCONT);
}

TEST_CASE("a blocking call from a callback is refused instead of deadlocking", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = OpenClient({node.address()});
  std::promise<Status> inner;
  c->PutAsync("k", "v", [&](Status) {
    std::string v;
    inner.set_value(c->Get("k", &v));
  });
  auto f = inner.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  Status s = f.get();
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("Async") != std::string::npos);
}

TEST_CASE("many threads share one client", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n"), {"--sync-policy", "async"}});
  auto c = OpenClient({node.address()});
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string k = "t" + std::to_string(t) + ":" + std::to_string(i);
        if (!c->Put(k, k).ok()) failures++;
        std::string v;
        if (!c->Get(k, &v).ok() || v != k) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures.load() == 0);
}

TEST_CASE("the README example builds and runs against a node", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto r = RunCommand({Bin("readme_example"), node.address()}, "", 20s);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("greeting = hello, ring") != std::string::npos);
  CHECK(r.out.find("visits = 1") != std::string::npos);
  CHECK(r.out.find("async put: OK") != std::string::npos);
}

}  // namespace
}  // namespace ring::test
