// The kernel formats and file types (formats.h): which are taken, and their sizes.

#include "formats.h"

namespace autan {

bool supported(int qtype) {
  return qtype == static_cast<int>(QType::Q4_0) || qtype == static_cast<int>(QType::Q4_1) ||
         qtype == static_cast<int>(QType::Q8_0) || qtype == static_cast<int>(QType::K8);
}

bool repackable(int file_type) {
  switch (static_cast<FileType>(file_type)) {
    case FileType::Q4_0:
    case FileType::Q4_1:
    case FileType::Q5_0:
    case FileType::Q5_1:
    case FileType::Q8_0:
    case FileType::Q4_K:
    case FileType::Q5_K:
    case FileType::Q6_K:
      return true;
  }
  return false;
}

QType kernel_type(FileType file) {
  switch (file) {
    case FileType::Q4_0:
      return QType::Q4_0;
    case FileType::Q4_1:
    case FileType::Q4_K:
      return QType::Q4_1;
    case FileType::Q8_0:
      return QType::Q8_0;
    default:
      return QType::K8;
  }
}

size_t file_block_bytes(FileType file) {
  switch (file) {
    case FileType::Q4_0:
      return 18;
    case FileType::Q4_1:
      return 20;
    case FileType::Q5_0:
      return 22;
    case FileType::Q5_1:
      return 24;
    case FileType::Q8_0:
      return 34;
    case FileType::Q4_K:
      return 144;
    case FileType::Q5_K:
      return 176;
    default:
      return 210;
  }
}

int64_t file_block_values(FileType file) {
  return file == FileType::Q4_K || file == FileType::Q5_K || file == FileType::Q6_K ? 256 : QBLOCK;
}

size_t group_block_bytes(QType type) {
  switch (type) {
    case QType::Q4_0:
      return Group<QType::Q4_0>::size;
    case QType::Q4_1:
      return Group<QType::Q4_1>::size;
    case QType::Q8_0:
      return Group<QType::Q8_0>::size;
    default:
      return Group<QType::K8>::size;
  }
}

}  // namespace autan
