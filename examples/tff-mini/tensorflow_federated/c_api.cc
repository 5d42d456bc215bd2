// The C entry point the Python package loads with ctypes.
#include "tensorflow_federated/cc/core/executor.h"

extern "C" double TFF_FederatedSum(const double* values, int n) {
  return tensorflow_federated::FederatedSum(values, n);
}
