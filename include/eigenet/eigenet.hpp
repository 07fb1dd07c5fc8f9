// eigenet/eigenet.hpp — everything in one include.
#pragma once

#include "eigenet/error.hpp"
#include "eigenet/io/mnist.hpp"
#include "eigenet/kernels/batchnorm.hpp"
#include "eigenet/kernels/dropout.hpp"
#include "eigenet/kernels/random.hpp"
#include "eigenet/layers/batchnorm.hpp"
#include "eigenet/layers/dense.hpp"
#include "eigenet/layers/dropout.hpp"
#include "eigenet/layers/layer.hpp"
#include "eigenet/layers/relu.hpp"
#include "eigenet/model/loss.hpp"
#include "eigenet/model/optimizer.hpp"
#include "eigenet/model/sequential.hpp"
#include "eigenet/tensor.hpp"
