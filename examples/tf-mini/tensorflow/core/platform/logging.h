#ifndef TENSORFLOW_CORE_PLATFORM_LOGGING_H_
#define TENSORFLOW_CORE_PLATFORM_LOGGING_H_

namespace tensorflow {
// Number of messages logged so far.
int LogCount();
void Log(const char* message);
}  // namespace tensorflow

#endif  // TENSORFLOW_CORE_PLATFORM_LOGGING_H_
