#include "tensorflow_federated/cc/core/executor.h"

#include "tensorflow/core/framework/tensor.h"

namespace tensorflow_federated {
double FederatedSum(const double* client_values, int clients) {
  return tensorflow::Sum(client_values, clients);
}
}  // namespace tensorflow_federated
