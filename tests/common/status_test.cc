// Tests for common/status.{h,cc} and the public ring/status.h: codes and their names,
// context chaining, ToString, Result<T>, and the RETURN_IF_ERROR / ASSIGN_OR_RETURN macros.
#include "common/status.h"

#include <catch2/catch.hpp>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ring {
namespace {

struct CodeCase {
  Status status;
  StatusCode code;
  const char* name;
};

std::vector<CodeCase> AllCodes() {
  return {
      {Status::OK(), StatusCode::kOk, "OK"},
      {Status::NotFound("m"), StatusCode::kNotFound, "NotFound"},
      {Status::InvalidArgument("m"), StatusCode::kInvalidArgument, "InvalidArgument"},
      {Status::Corruption("m"), StatusCode::kCorruption, "Corruption"},
      {Status::IOError("m"), StatusCode::kIOError, "IOError"},
      {Status::NotLeader("m"), StatusCode::kNotLeader, "NotLeader"},
      {Status::WrongShard("m"), StatusCode::kWrongShard, "WrongShard"},
      {Status::StaleEpoch("m"), StatusCode::kStaleEpoch, "StaleEpoch"},
      {Status::Timeout("m"), StatusCode::kTimeout, "Timeout"},
      {Status::Unavailable("m"), StatusCode::kUnavailable, "Unavailable"},
      {Status::Busy("m"), StatusCode::kBusy, "Busy"},
  };
}

}  // namespace

TEST_CASE("a default-constructed status is OK with an empty message", "[status]") {
  Status s;
  CHECK(s.ok());
  CHECK(s.code() == StatusCode::kOk);
  CHECK(s.message().empty());
  CHECK(s == Status::OK());
  CHECK(s.ToString() == "OK");
}

TEST_CASE("every factory sets its own code and name", "[status]") {
  std::vector<CodeCase> cases = AllCodes();
  REQUIRE(cases.size() == static_cast<size_t>(kStatusCodeCount));
  for (const CodeCase& c : cases) {
    INFO(c.name);
    CHECK(c.status.code() == c.code);
    CHECK(std::string(StatusCodeName(c.code)) == c.name);
    CHECK(c.status.ok() == (c.code == StatusCode::kOk));
    if (c.code != StatusCode::kOk) CHECK(c.status.message() == "m");
  }
}

TEST_CASE("codes keep their wire numbers", "[status]") {
  // The numbers are part of the wire protocol (proto/ring.proto ErrorCode).
  CHECK(static_cast<int>(StatusCode::kOk) == 0);
  CHECK(static_cast<int>(StatusCode::kNotFound) == 1);
  CHECK(static_cast<int>(StatusCode::kInvalidArgument) == 2);
  CHECK(static_cast<int>(StatusCode::kCorruption) == 3);
  CHECK(static_cast<int>(StatusCode::kIOError) == 4);
  CHECK(static_cast<int>(StatusCode::kNotLeader) == 5);
  CHECK(static_cast<int>(StatusCode::kWrongShard) == 6);
  CHECK(static_cast<int>(StatusCode::kStaleEpoch) == 7);
  CHECK(static_cast<int>(StatusCode::kTimeout) == 8);
  CHECK(static_cast<int>(StatusCode::kUnavailable) == 9);
  CHECK(static_cast<int>(StatusCode::kBusy) == 10);
}

TEST_CASE("code names are distinct and an out-of-range code is named Unknown", "[status]") {
  std::set<std::string> names;
  for (int c = 0; c < kStatusCodeCount; ++c) {
    names.insert(StatusCodeName(static_cast<StatusCode>(c)));
  }
  CHECK(names.size() == static_cast<size_t>(kStatusCodeCount));
  CHECK(names.count("Unknown") == 0);
  CHECK(std::string(StatusCodeName(static_cast<StatusCode>(kStatusCodeCount))) == "Unknown");
  CHECK(std::string(StatusCodeName(static_cast<StatusCode>(255))) == "Unknown");
}

TEST_CASE("the Is predicates match only their own code", "[status]") {
  for (const CodeCase& c : AllCodes()) {
    INFO(c.name);
    CHECK(c.status.IsNotFound() == (c.code == StatusCode::kNotFound));
    CHECK(c.status.IsInvalidArgument() == (c.code == StatusCode::kInvalidArgument));
    CHECK(c.status.IsIOError() == (c.code == StatusCode::kIOError));
    CHECK(c.status.IsTimeout() == (c.code == StatusCode::kTimeout));
    CHECK(c.status.IsUnavailable() == (c.code == StatusCode::kUnavailable));
    CHECK(c.status.IsBusy() == (c.code == StatusCode::kBusy));
  }
}

TEST_CASE("ToString is the code name, a colon and the message", "[status]") {
  CHECK(Status::NotFound("key \"a\"").ToString() == "NotFound: key \"a\"");
  CHECK(Status::IOError("No space left on device").ToString() ==
        "IOError: No space left on device");
  // An empty message leaves no dangling colon.
  CHECK(Status::Busy("").ToString() == "Busy");
}

TEST_CASE("WithContext prefixes the message and keeps the code", "[status]") {
  Status s = Status::IOError("No space left on device");
  Status chained = s.WithContext("append at index 4410").WithContext("shard 17");
  CHECK(chained.code() == StatusCode::kIOError);
  CHECK(chained.message() == "shard 17: append at index 4410: No space left on device");
  CHECK(chained.ToString() == "IOError: shard 17: append at index 4410: No space left on device");
  // The original is untouched.
  CHECK(s.message() == "No space left on device");
}

TEST_CASE("WithContext on OK stays OK without a message", "[status]") {
  Status s = Status::OK().WithContext("shard 3");
  CHECK(s.ok());
  CHECK(s.message().empty());
  CHECK(s.ToString() == "OK");
}

TEST_CASE("statuses compare equal only with equal code and message", "[status]") {
  CHECK(Status::NotFound("a") == Status::NotFound("a"));
  CHECK_FALSE(Status::NotFound("a") == Status::NotFound("b"));
  CHECK_FALSE(Status::NotFound("a") == Status::Corruption("a"));
  CHECK(Status(StatusCode::kTimeout, "t") == Status::Timeout("t"));
}

TEST_CASE("a Result holds either a value or a non-OK status", "[status]") {
  Result<int> value = 42;
  REQUIRE(value.ok());
  CHECK(value.value() == 42);
  CHECK(*value == 42);
  CHECK(value.status().ok());

  Result<int> error = Status::NotFound("no such key");
  REQUIRE_FALSE(error.ok());
  CHECK(error.status() == Status::NotFound("no such key"));
}

TEST_CASE("a Result gives access to its value by reference and by move", "[status]") {
  Result<std::string> r = std::string("hello");
  CHECK(r->size() == 5);
  r.value() += " world";
  CHECK(*r == "hello world");

  Result<std::unique_ptr<int>> owned = std::make_unique<int>(7);
  std::unique_ptr<int> taken = std::move(owned).value();
  REQUIRE(taken != nullptr);
  CHECK(*taken == 7);

  const Result<std::string> c = std::string("const");
  CHECK(c.value() == "const");
  CHECK(c->size() == 5);
}

namespace {

int g_calls = 0;

Status Fail(StatusCode code) {
  ++g_calls;
  return Status(code, "failed");
}

Status TwoSteps(bool first_fails, bool second_fails) {
  RETURN_IF_ERROR(first_fails ? Fail(StatusCode::kIOError) : Status::OK());
  RETURN_IF_ERROR(second_fails ? Fail(StatusCode::kTimeout) : Status::OK());
  return Status::NotFound("reached the end");
}

Result<int> Parse(int v) {
  if (v < 0) return Status::InvalidArgument("negative");
  return v * 2;
}

Result<int> AddParsed(int a, int b) {
  ASSIGN_OR_RETURN(int x, Parse(a));
  ASSIGN_OR_RETURN(int y, Parse(b));
  return x + y;
}

Status AssignIntoExisting(int v, int* out) {
  int x = -1;
  ASSIGN_OR_RETURN(x, Parse(v));
  *out = x;
  return Status::OK();
}

Result<std::unique_ptr<int>> MakeOwned(bool ok) {
  if (!ok) return Status::Unavailable("none");
  return std::make_unique<int>(5);
}

Result<int> UseOwned(bool ok) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> p, MakeOwned(ok));
  return *p;
}

}  // namespace

TEST_CASE("RETURN_IF_ERROR returns the first failure and evaluates it once", "[status]") {
  g_calls = 0;
  CHECK(TwoSteps(false, false) == Status::NotFound("reached the end"));
  CHECK(TwoSteps(true, true).code() == StatusCode::kIOError);
  CHECK(g_calls == 1);  // the second step never ran
  CHECK(TwoSteps(false, true).code() == StatusCode::kTimeout);
  CHECK(g_calls == 2);
}

TEST_CASE("RETURN_IF_ERROR works as a single statement under if without braces", "[status]") {
  auto f = [](bool fail) -> Status {
    if (fail)
      RETURN_IF_ERROR(Status::Busy("full"));
    else
      return Status::NotFound("else branch");
    return Status::OK();
  };
  CHECK(f(true).IsBusy());
  CHECK(f(false).IsNotFound());
}

TEST_CASE("ASSIGN_OR_RETURN declares the value or returns the status", "[status]") {
  Result<int> ok = AddParsed(2, 3);
  REQUIRE(ok.ok());
  CHECK(*ok == 10);

  Result<int> first_bad = AddParsed(-1, 3);
  REQUIRE_FALSE(first_bad.ok());
  CHECK(first_bad.status() == Status::InvalidArgument("negative"));

  Result<int> second_bad = AddParsed(1, -3);
  CHECK(second_bad.status().IsInvalidArgument());
}

TEST_CASE("ASSIGN_OR_RETURN assigns to an existing variable from a Status function", "[status]") {
  int out = 0;
  CHECK(AssignIntoExisting(4, &out).ok());
  CHECK(out == 8);
  out = 0;
  CHECK(AssignIntoExisting(-4, &out).IsInvalidArgument());
  CHECK(out == 0);
}

TEST_CASE("ASSIGN_OR_RETURN moves a move-only value out of the Result", "[status]") {
  Result<int> r = UseOwned(true);
  REQUIRE(r.ok());
  CHECK(*r == 5);
  CHECK(UseOwned(false).status().IsUnavailable());
}

}  // namespace ring
