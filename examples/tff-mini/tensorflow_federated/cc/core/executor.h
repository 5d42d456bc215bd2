#ifndef TENSORFLOW_FEDERATED_CC_CORE_EXECUTOR_H_
#define TENSORFLOW_FEDERATED_CC_CORE_EXECUTOR_H_

namespace tensorflow_federated {
// Sums each client's value with TensorFlow's native kernel, as a federated sum would.
double FederatedSum(const double* client_values, int clients);
}  // namespace tensorflow_federated

#endif  // TENSORFLOW_FEDERATED_CC_CORE_EXECUTOR_H_
