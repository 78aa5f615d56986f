// common/coding.h: the byte encodings of persisted records.
//
//   be64     8 bytes, most significant first: sorts like the number (keys, fixed fields).
//   le64     8 bytes, least significant first (configuration entries in the Raft log).
//   varint   LEB128, 7 bits per byte, least significant group first: 1 byte below 128,
//            at most 10 bytes (compact record fields).
//
// Readers take the input and a position, advance the position past what they read, and
// return false (with the position unchanged) if the input ends too soon or, for a varint,
// runs past 10 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ring {

void AppendBe64(std::string* out, uint64_t v);
bool ReadBe64(std::string_view in, size_t* pos, uint64_t* v);

void AppendLe64(std::string* out, uint64_t v);
bool ReadLe64(std::string_view in, size_t* pos, uint64_t* v);

void AppendVarint(std::string* out, uint64_t v);
bool ReadVarint(std::string_view in, size_t* pos, uint64_t* v);

}  // namespace ring
