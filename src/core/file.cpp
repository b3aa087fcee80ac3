// Small file helpers shared by the derived cache files (file.hpp).
#include "core/file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>

#include "core/error.hpp"

namespace hashwall {

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void write_file_atomically(const std::filesystem::path& file, const std::string& bytes) {
  static std::atomic<unsigned> counter{0};
  const auto tmp = std::filesystem::path(file.string() + ".tmp." + std::to_string(::getpid()) +
                                         "." + std::to_string(counter++));
  const auto fail = [&](const char* what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::Io, file.string(),
                std::string(what) + ": " + std::generic_category().message(err));
  };
  // 0600 (less where the umask says so): caches describe the bank's records.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot write the cache file");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      fail("cannot write the cache file");
    }
    done += static_cast<std::size_t>(n);
  }
  // fsync before rename: after a crash the cache is either the old file or the whole new one.
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("cannot sync the cache file");
  }
  if (::close(fd) != 0) fail("cannot write the cache file");
  if (::rename(tmp.c_str(), file.c_str()) != 0) fail("cannot rename the cache file");
  // Make the rename itself durable; best effort (some file systems refuse to fsync dirs).
  auto dir = file.parent_path();
  if (dir.empty()) dir = ".";
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace hashwall
