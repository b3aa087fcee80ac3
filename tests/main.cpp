#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

int main(int argc, char* argv[]) {
  // The "pg: ..." tests (CMakeLists.txt) get one variable from CTest, as a test's
  // ENVIRONMENT property holds one; they skip under CTest like the others.
  if (const char* s = std::getenv("HASHWALL_TEST_STORE"); s && std::strcmp(s, "postgresql") == 0)
    setenv("HASHWALL_SKIP_EXIT", "1", 0);
  return Catch::Session().run(argc, argv);
}
