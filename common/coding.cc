#include "common/coding.h"

namespace ring {

void AppendBe64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (56 - 8 * i));
  out->append(b, 8);
}

bool ReadBe64(std::string_view in, size_t* pos, uint64_t* v) {
  if (*pos > in.size() || in.size() - *pos < 8) return false;
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x = (x << 8) | static_cast<unsigned char>(in[*pos + i]);
  *pos += 8;
  *v = x;
  return true;
}

void AppendLe64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 8);
}

bool ReadLe64(std::string_view in, size_t* pos, uint64_t* v) {
  if (*pos > in.size() || in.size() - *pos < 8) return false;
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x |= uint64_t{static_cast<unsigned char>(in[*pos + i])} << (8 * i);
  *pos += 8;
  *v = x;
  return true;
}

void AppendVarint(std::string* out, uint64_t v) {
  char b[10];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  b[n++] = static_cast<char>(v);
  out->append(b, n);
}

bool ReadVarint(std::string_view in, size_t* pos, uint64_t* v) {
  uint64_t x = 0;
  for (size_t i = 0, p = *pos; i < 10 && p < in.size(); ++i, ++p) {
    const auto byte = static_cast<unsigned char>(in[p]);
    if (i == 9 && byte > 1) return false;  // past 64 bits
    x |= uint64_t{byte & 0x7fu} << (7 * i);
    if (byte < 0x80) {
      *pos = p + 1;
      *v = x;
      return true;
    }
  }
  return false;
}

}  // namespace ring
