#include "tensorflow/core/platform/logging.h"

namespace tensorflow {
namespace {
int count = 0;
}
int LogCount() { return count; }
void Log(const char* message) { (void)message; ++count; }
}  // namespace tensorflow
