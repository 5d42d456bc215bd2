// The C entry points the Python package loads with ctypes.
#include "tensorflow/core/framework/tensor.h"

extern "C" {
const char* TF_Version() { return TF_VERSION_STRING; }
double TF_Sum(const double* values, int n) { return tensorflow::Sum(values, n); }
int TF_LogCount() { return tensorflow::LogCount(); }
}
