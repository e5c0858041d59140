#pragma once
// Everything a user needs: #include <cnn/cnn.hpp>
#include "cnn/error.hpp"
#include "cnn/tensor.hpp"
#include "cnn/types.hpp"
#include "cnn/data.hpp"
#include "cnn/layers.hpp"
#include "cnn/callbacks.hpp"
#include "cnn/model.hpp"
#include "cnn/initializers.hpp"
#include "cnn/check.hpp"
#include "cnn/distributed.hpp"
