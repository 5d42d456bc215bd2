#include "tensorflow/core/lib/strings/str_util.h"

namespace tensorflow {
namespace str_util {
int32 DigitCount(uint64 value) {
  int32 digits = 1;
  while (value >= 10) {
    value /= 10;
    ++digits;
  }
  return digits;
}
}  // namespace str_util
}  // namespace tensorflow
