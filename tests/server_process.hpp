// `hashwall serve` as a child process for end-to-end tests (test_server, test_exchange).
#pragma once

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace hwtest {

inline std::string slurp_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `hashwall serve` as a child process on 127.0.0.1 with port 0; the destructor stops it
// (SIGTERM, then SIGKILL) so no test leaves a server behind, even when it fails.
class ServerProcess {
 public:
  ServerProcess(const fs::path& dir, const std::vector<std::string>& args)
      : log_(dir / "serve.log") {
    std::vector<std::string> argv = {hwtest::hashwall_binary().string(), "serve", "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
      }
      std::vector<char*> cargs;
      for (auto& a : argv) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execv(cargs[0], cargs.data());
      _exit(127);
    }
    // Wait for the "listening on http://127.0.0.1:PORT" line (or an early exit).
    const std::regex re(R"(listening on http://127\.0\.0\.1:(\d+))");
    // A generous bound (60 s), not a timing test: ASan on two busy cores loads slowly.
    for (int i = 0; i < 1200 && port_ == 0; ++i) {
      std::smatch m;
      const std::string text = slurp_file(log_);
      if (std::regex_search(text, m, re))
        port_ = std::stoi(m[1]);
      else if (exited())
        break;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServerProcess() {
    if (pid_ <= 0 || exited()) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && !exited(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!exited()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return slurp_file(log_); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  void terminate() { kill(pid_, SIGTERM); }
  // Waits up to `seconds` for the process to end; its exit code, or -1 if still running.
  int wait_exit(double seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      if (exited()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!exited()) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }

 private:
  bool exited() {
    if (reaped_) return true;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return reaped_;
  }
  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = 0;
  bool reaped_ = false;
};

}  // namespace hwtest
