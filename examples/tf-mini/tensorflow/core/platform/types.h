#ifndef TENSORFLOW_CORE_PLATFORM_TYPES_H_
#define TENSORFLOW_CORE_PLATFORM_TYPES_H_

#include <cstdint>

namespace tensorflow {
// TensorFlow's fixed-width integer names.
using int32 = std::int32_t;
using uint64 = std::uint64_t;
}  // namespace tensorflow

#endif  // TENSORFLOW_CORE_PLATFORM_TYPES_H_
