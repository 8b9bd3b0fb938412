#pragma once
namespace remora {
extern const char* const kVersion;
extern const char* const kRevision;
}  // namespace remora
