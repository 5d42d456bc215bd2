#ifndef TENSORFLOW_CORE_LIB_STRINGS_STR_UTIL_H_
#define TENSORFLOW_CORE_LIB_STRINGS_STR_UTIL_H_

#include "tensorflow/core/platform/types.h"

namespace tensorflow {
namespace str_util {
// The number of decimal digits of ``value``.
int32 DigitCount(uint64 value);
}  // namespace str_util
}  // namespace tensorflow

#endif  // TENSORFLOW_CORE_LIB_STRINGS_STR_UTIL_H_
