#ifndef TENSORFLOW_CORE_FRAMEWORK_TENSOR_H_
#define TENSORFLOW_CORE_FRAMEWORK_TENSOR_H_

#include "tensorflow/core/platform/logging.h"

namespace tensorflow {
// A one-dimensional tensor of doubles, just enough to have something to link.
double Sum(const double* values, int n);
}  // namespace tensorflow

#endif  // TENSORFLOW_CORE_FRAMEWORK_TENSOR_H_
