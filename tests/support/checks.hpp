// tests/support/checks.hpp — small helpers for behavioural tests: the message of an
// expected exception, and a substring assertion that prints both strings on failure.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace eigenet::testing {

/// The what() of the `Exception` that `action` throws; a test failure (and "") if it
/// throws nothing. Any other exception propagates and fails the test.
template <typename Exception, typename Action>
std::string message_of(Action&& action) {
  try {
    action();
  } catch (const Exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception, none was thrown";
  return {};
}

/// EXPECT_TRUE(contains(message, "BatchNorm(3)")) reports the whole message on failure.
inline ::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

}  // namespace eigenet::testing
