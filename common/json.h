// common/json.h: a minimal JSON writer for --json output and the metrics/health endpoints.
// Strings are escaped per RFC 8259; bytes that are not valid UTF-8 are written as \u00XX
// escapes of each byte, so binary keys and values always produce valid JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ring {

// Appends `s` as a quoted, escaped JSON string.
void AppendJsonString(std::string* out, std::string_view s);

// Builds one JSON object or array incrementally; commas are handled for you.
//   JsonWriter w; w.BeginObject(); w.Key("ok"); w.Bool(true); w.EndObject(); w.str();
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view v);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  const std::string& str() const { return out_; }

 private:
  void Separate();
  std::string out_;
  bool need_comma_ = false;
};

}  // namespace ring
