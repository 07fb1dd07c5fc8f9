// examples/mlp_mnist — trains a multilayer perceptron on the real MNIST files and
// evaluates it on the test set in inference mode.
//
//   mlp_mnist [--data DIR] [--model seed-bn|seed-dropout|mlp] [--epochs N] [--batch N]
//             [--lr X] [--seed N] [--threads N] [--json FILE]
//
// Models (every Dense He-initialised, Adam with PyTorch's defaults):
//   seed-bn       Dense 784→64, ReLU, BatchNorm(64), Dense 64→10
//   seed-dropout  Dense 784→64, ReLU, Dropout(0.5), Dense 64→10
//   mlp           784→512→512→10, each hidden layer Dense, BatchNorm, ReLU, Dropout(0.2)
// Each epoch visits the training set once in a fresh order drawn from --seed (a trailing
// batch of one sample is skipped: BatchNorm needs two values per channel in training).
// After training, a model with a Dense directly followed by a BatchNorm (mlp) is also folded
// for inference (eigenet::fold_batchnorm) and the folded model evaluated.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Scalar = float;
using eigenet::Index;

struct Options {
  std::string data = "data/mnist";
  std::string model = "seed-bn";
  int epochs = 10;
  Index batch = 32;
  double lr = 1e-3;
  std::uint64_t seed = 0;
  int threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS, else one per core)
  std::string json;
};

const char* const kUsage =
    "usage: mlp_mnist [--data DIR] [--model seed-bn|seed-dropout|mlp] [--epochs N] [--batch N]\n"
    "                 [--lr X] [--seed N] [--threads N] [--json FILE]\n"
    "  --data    folder with the four MNIST IDX files (default data/mnist)\n"
    "  --model   seed-bn (default), seed-dropout or mlp\n"
    "  --epochs  passes over the training set (default 10)\n"
    "  --batch   samples per step (default 32)\n"
    "  --lr      Adam learning rate (default 1e-3)\n"
    "  --seed    seed of initialisation, shuffling and dropout (default 0)\n"
    "  --threads OpenMP threads (default: OMP_NUM_THREADS, else one per core); on a busy\n"
    "            machine --threads 1 avoids waiting on a descheduled thread at every layer\n"
    "  --json    also write the results to FILE as JSON\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
T parse_number(const std::string& flag, const std::string& text) {
  std::istringstream in(text);
  T value{};
  if (!(in >> value) || !in.eof()) {
    const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    throw UsageError(flag + (digits ? " is out of range: '" : " expects a number, not '") + text + "'");
  }
  return value;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    static const char* const kFlags[] = {"--data", "--model", "--epochs",  "--batch",
                                         "--lr",   "--seed",  "--threads", "--json"};
    if (std::find(std::begin(kFlags), std::end(kFlags), flag) == std::end(kFlags))
      throw UsageError("unknown flag '" + flag + "'");
    if (i + 1 >= argc) throw UsageError(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--data") {
      options.data = value;
    } else if (flag == "--model") {
      if (value != "seed-bn" && value != "seed-dropout" && value != "mlp")
        throw UsageError("--model should be seed-bn, seed-dropout or mlp, not '" + value + "'");
      options.model = value;
    } else if (flag == "--epochs") {
      options.epochs = parse_number<int>(flag, value);
      if (options.epochs < 1) throw UsageError("--epochs should be at least 1");
    } else if (flag == "--batch") {
      options.batch = parse_number<Index>(flag, value);
      if (options.batch < 2) throw UsageError("--batch should be at least 2 (BatchNorm needs two samples)");
    } else if (flag == "--lr") {
      options.lr = parse_number<double>(flag, value);
      if (!(options.lr > 0.0)) throw UsageError("--lr should be positive");
    } else if (flag == "--seed") {
      // istream reads "-5" into an unsigned as 2^64 − 5: refuse a sign instead.
      if (value.find_first_not_of("0123456789") != std::string::npos)
        throw UsageError("--seed expects a non-negative integer, not '" + value + "'");
      options.seed = parse_number<std::uint64_t>(flag, value);
    } else if (flag == "--threads") {
      options.threads = parse_number<int>(flag, value);
      if (options.threads < 1) throw UsageError("--threads should be at least 1");
    } else {  // --json
      options.json = value;
    }
  }
  return options;
}

eigenet::Sequential<Scalar> build_model(const Options& options) {
  using namespace eigenet;
  Sequential<Scalar> model;
  std::uint64_t stream = options.seed * 1000;  // one seed per randomised layer
  if (options.model == "mlp") {
    Index width = 784;
    for (int hidden = 0; hidden < 2; ++hidden) {
      model.add<Dense<Scalar>>(width, 512, Init::HeUniform, ++stream);
      model.add<BatchNorm<Scalar>>(512);
      model.add<ReLU<Scalar>>();
      model.add<Dropout<Scalar>>(0.2, ++stream);
      width = 512;
    }
    model.add<Dense<Scalar>>(width, 10, Init::HeUniform, ++stream);
  } else {
    model.add<Dense<Scalar>>(784, 64, Init::HeUniform, ++stream);
    model.add<ReLU<Scalar>>();
    if (options.model == "seed-bn")
      model.add<BatchNorm<Scalar>>(64);
    else
      model.add<Dropout<Scalar>>(0.5, ++stream);
    model.add<Dense<Scalar>>(64, 10, Init::HeUniform, ++stream);
  }
  return model;
}

/// A uniformly random permutation of [0, n), a pure function of (seed, epoch).
std::vector<Index> shuffled_indices(Index n, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<Index> order(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  const auto key = eigenet::kernels::stream_key(seed ^ 0x5368756666ULL, epoch);  // stream "Shuff"
  for (Index i = n - 1; i > 0; --i) {
    const auto j = static_cast<Index>(eigenet::kernels::uniform01(key, static_cast<std::uint64_t>(i)) *
                                      static_cast<double>(i + 1));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

double evaluate(eigenet::Sequential<Scalar>& model, const eigenet::io::Dataset<Scalar>& test) {
  model.eval();
  const Index n = test.size(), pixels = test.images.dimension(1), chunk = 1000;
  Index correct = 0;
  for (Index begin = 0; begin < n; begin += chunk) {
    const Index rows = std::min(chunk, n - begin);
    const eigenet::ConstView<Scalar> x{test.images.data() + begin * pixels, {rows, pixels}};
    const auto predicted = eigenet::argmax_rows(model.forward_view(x));
    for (Index i = 0; i < rows; ++i)
      correct += predicted[static_cast<std::size_t>(i)] == test.labels[static_cast<std::size_t>(begin + i)];
  }
  model.train();
  return static_cast<double>(correct) / static_cast<double>(n);
}

/// A --json FILE that cannot be written; reported before training, not after it.
struct OutputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Fails at once if FILE cannot be written, without truncating an existing file or leaving
/// an empty one behind (the results are written only when training has finished).
void check_writable(const std::string& path) {
  std::error_code error;
  const bool existed = std::filesystem::exists(path, error);
  {
    std::ofstream probe(path, std::ios::app);
    if (!probe) throw OutputError("cannot open --json file '" + path + "' for writing");
  }
  if (!existed) std::filesystem::remove(path, error);
}

/// The datasets mlp_mnist's models take: 28×28 images, at least one batch to train on and
/// one image to test.
void check_datasets(const eigenet::io::Dataset<Scalar>& train, const eigenet::io::Dataset<Scalar>& test,
                    const Options& options) {
  for (const auto* set : {&train, &test})
    if (set->rows != 28 || set->cols != 28)
      throw std::runtime_error(eigenet::detail::concat("the MNIST files in ", options.data, " hold ", set->rows, "x",
                                                       set->cols, " images; the models take 28x28"));
  if (train.size() < options.batch)
    throw std::runtime_error(eigenet::detail::concat("--batch ", options.batch, " is larger than the training set (",
                                                     train.size(), " images in ", options.data, ")"));
  if (test.size() < 1) throw std::runtime_error("the test set in " + options.data + " holds no images");
}

int run(const Options& options) {
  if (!options.json.empty()) check_writable(options.json);
#ifdef _OPENMP
  if (options.threads > 0) omp_set_num_threads(options.threads);
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif
  const auto train = eigenet::io::load_mnist<Scalar>(options.data, "train");
  const auto test = eigenet::io::load_mnist<Scalar>(options.data, "t10k");
  check_datasets(train, test, options);
  auto model = build_model(options);
  eigenet::Adam<Scalar> optimizer(model.parameters(), {options.lr});
  eigenet::SoftmaxCrossEntropy<Scalar> loss;
  std::cout << "mlp_mnist: " << model.name() << "\n"
            << "  train " << train.size() << ", test " << test.size() << ", batch " << options.batch << ", Adam lr "
            << options.lr << ", seed " << options.seed << ", threads " << threads << std::endl;

  const Index n = train.size(), pixels = train.images.dimension(1);
  eigenet::Tensor<Scalar, 2> batch_images(options.batch, pixels);
  std::vector<std::int64_t> batch_labels;
  eigenet::Buffer<Scalar> grad;
  std::vector<double> epoch_seconds;
  double accuracy = 0.0;
  model.train();
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    const auto order = shuffled_indices(n, options.seed, static_cast<std::uint64_t>(epoch));
    double loss_sum = 0.0;
    Index seen = 0;
    for (Index begin = 0; begin + 1 < n; begin += options.batch) {
      const Index rows = std::min(options.batch, n - begin);
      if (rows < 2) break;
      batch_labels.resize(static_cast<std::size_t>(rows));
      for (Index r = 0; r < rows; ++r) {
        const Index source = order[static_cast<std::size_t>(begin + r)];
        std::copy(train.images.data() + source * pixels, train.images.data() + (source + 1) * pixels,
                  batch_images.data() + r * pixels);
        batch_labels[static_cast<std::size_t>(r)] = train.labels[static_cast<std::size_t>(source)];
      }
      const eigenet::ConstView<Scalar> x{batch_images.data(), {rows, pixels}};
      const auto logits = model.forward_view(x);
      loss_sum += loss.forward(logits, batch_labels.data(), rows) * static_cast<double>(rows);
      seen += rows;
      grad.resize(logits.shape);
      loss.backward_into(grad.view());
      optimizer.zero_grad();
      model.backward_into(x, grad.view(), {nullptr, x.shape});
      optimizer.step();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    epoch_seconds.push_back(seconds);
    accuracy = evaluate(model, test);
    std::cout << "epoch " << std::setw(2) << epoch + 1 << "/" << options.epochs << "  train_loss " << std::fixed
              << std::setprecision(4) << loss_sum / static_cast<double>(seen) << "  test_accuracy " << accuracy
              << "  seconds " << std::setprecision(2) << seconds << std::defaultfloat << std::endl;
  }

  // For deployment: each Dense followed by a BatchNorm folded into one Dense (a new model;
  // `model` stays trainable). Its accuracy equals the trained model's up to float rounding.
  auto folded = eigenet::fold_batchnorm(model);
  if (folded.size() < model.size()) {
    const double folded_accuracy = evaluate(folded, test);
    std::cout << "folded for inference: " << folded.name() << "\n  test_accuracy " << std::fixed << std::setprecision(4)
              << folded_accuracy << std::defaultfloat << std::endl;
  }

  if (!options.json.empty()) {
    // Exactly the fields the README promises; the folded accuracy is printed above.
    std::ofstream json(options.json);
    json << "{\"model\": \"" << options.model << "\", \"epochs\": " << options.epochs
         << ", \"batch\": " << options.batch << ", \"test_accuracy\": " << std::setprecision(6) << accuracy
         << ", \"epoch_seconds\": [";
    for (std::size_t i = 0; i < epoch_seconds.size(); ++i) json << (i ? ", " : "") << epoch_seconds[i];
    json << "]}\n";
    json.flush();
    if (!json) throw OutputError("cannot write --json file '" + options.json + "'");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "mlp_mnist: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mlp_mnist: " << e.what() << "\n";
    if (dynamic_cast<const eigenet::IoError*>(&e))
      std::cerr << "  (scripts/setup.sh fetches the MNIST files into data/mnist)\n";
    return 1;
  }
}
