// cnn show-data / plot / visualize: the pictures of cnn/pictures.hpp from the command line.
// (The confusion matrix and misclassified images are options of `cnn eval`, in train.cpp.)
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "cli.hpp"
#include "cnn/pictures.hpp"

namespace cnn::cli {
namespace fs = std::filesystem;

void save_picture(const Image& image, const std::string& path, const std::string& what) {
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  save_png(image, path);
  std::printf("Wrote %s (%dx%d): %s\n", path.c_str(), image.width, image.height, what.c_str());
}

namespace {

// "32" -> 32x32, "24x32" -> height 24, width 32.
std::pair<int, int> parse_size(const std::string& text) {
  int h = 0, w = 0;
  char extra = 0;
  if (std::sscanf(text.c_str(), "%dx%d%c", &h, &w, &extra) == 2 && h > 0 && w > 0) return {h, w};
  if (std::sscanf(text.c_str(), "%d%c", &h, &extra) == 1 && h > 0) return {h, h};
  throw UsageError("--size takes N (N x N pixels) or HxW, e.g. 32 or 24x32; got '" + text + "'");
}

// Pictures stacked top to bottom under a one-line title (kTitleSize, at (kMargin, kMargin)),
// part i with its left edge at x = parts[i].second, with a 1-pixel colors::grid rule across the
// top row of every part after the first. Size: width = max(x_i + part widths,
// 2 * kMargin + text_width(title, kTitleSize)), height = kMargin + text_height(kTitleSize) + sum
// of part heights; part i's top is at kMargin + text_height(kTitleSize) + heights before it.
Image stack_with_title(const std::string& title, const std::vector<std::pair<Image, int>>& parts) {
  const int title_h = text_height(kTitleSize);
  int width = 2 * kMargin + text_width(title, kTitleSize), height = kMargin + title_h;
  for (const auto& [p, x] : parts) {
    width = std::max(width, x + p.width);
    height += p.height;
  }
  Image out(width, height, colors::background);
  draw_text(out, kMargin, kMargin, title, colors::black, kTitleSize);
  int y = kMargin + title_h;
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto& [p, x] = parts[i];
    for (int r = 0; r < p.height; ++r)
      std::copy_n(p.pixels.begin() + 3 * ptrdiff_t(r) * p.width, 3 * p.width,
                  out.pixels.begin() + 3 * (ptrdiff_t(y + r) * width + x));
    if (i > 0) fill_rect(out, kMargin, y, width - 2 * kMargin, 1, colors::grid);
    y += p.height;
  }
  return out;
}

}  // namespace

Runner add_show_data(CLI::App& app) {
  struct Args {
    std::string data, out, split = "train", size;
    int per_class = 10, scale = 2;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("show-data", "Draw example images of every class of a data set, one row per class");
  sub->add_option("--data", a->data,
                  "Data folder (CIFAR-10 binary, MNIST IDX, or image folders); default: search for CIFAR-10");
  sub->add_option("--out", a->out, "PNG file to write")->required();
  sub->add_option("--per-class", a->per_class, "Images per class (default 10)")->check(CLI::Range(1, 1000));
  sub->add_option("--scale", a->scale, "Each image pixel as an S x S block (default 2)")->check(CLI::Range(1, 64));
  sub->add_option("--split", a->split, "train or test (default train)")->check(CLI::IsMember({"train", "test"}));
  sub->add_option("--size", a->size, "Image folders only: resize to N x N (or HxW) pixels, e.g. 32 or 24x32");
  return [a] {
    // Every data set at its natural shape: CIFAR-10 RGB 3x32x32, MNIST 1x28x28, image folders RGB at --size.
    const std::string dir = find_data_dir("cifar-10-batches-bin", a->data);
    auto has = [&](const char* name) { return fs::exists(fs::path(dir) / name); };
    Shape shape{3, 32, 32};
    int64_t limit = 0;  // image folders are read whole anyway
    if (has("data_batch_1.bin") || has("test_batch.bin")) {
      limit = std::max<int64_t>(2000, 100 * int64_t(a->per_class));  // about 10 x per_class of each class
    } else if (has("train-images-idx3-ubyte") || has("train-images-idx3-ubyte.gz") || has("t10k-images-idx3-ubyte") ||
               has("t10k-images-idx3-ubyte.gz")) {
      shape = {1, 28, 28};
      limit = std::max<int64_t>(2000, 100 * int64_t(a->per_class));
    } else if (fs::is_directory(fs::path(dir) / "train")) {
      if (a->size.empty())
        throw UsageError("show-data: '" + dir + "' is a folder of images; give --size N (or HxW) to size them");
      const auto [h, w] = parse_size(a->size);
      shape = {3, h, w};
    }  // else load_data_for names the formats it knows
    const bool test = a->split == "test";
    const TrainTest data = load_data_for(shape, dir, test ? 1 : limit, test ? limit : 1);
    const Dataset& d = test ? data.test : data.train;
    CNN_CHECK(d.size() > 0, "'", dir, "' has no ", a->split, " images");
    const Image img = data_grid(d, a->per_class, a->scale);
    save_picture(img, a->out,
                 std::to_string(d.num_classes()) + " classes x " + std::to_string(a->per_class) + " " + a->split +
                     " images");
    return 0;
  };
}

Runner add_plot(CLI::App& app) {
  struct Args {
    std::string log, out, title;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("plot", "Draw loss and accuracy per epoch from a `cnn train --log` CSV file");
  sub->add_option("--log", a->log, "Metrics CSV written by cnn train --log")->required();
  sub->add_option("--out", a->out, "PNG file to write")->required();
  sub->add_option("--title", a->title, "Title above both panels (default: none)");
  return [a] {
    CNN_CHECK(fs::is_regular_file(a->log), "metrics file '", a->log, "' does not exist");
    const std::vector<EpochMetrics> epochs = read_metrics_csv(a->log);
    CNN_CHECK(!epochs.empty(), "'", a->log, "' holds no epochs");
    save_picture(plot_training_curves(epochs, a->title), a->out,
                 std::to_string(epochs.size()) + (epochs.size() == 1 ? " epoch" : " epochs"));
    return 0;
  };
}

Runner add_visualize(CLI::App& app) {
  struct Args {
    std::string model, image, data, out;
    int scale = 2;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand(
      "visualize", "Draw a model's first-layer conv filters and every conv layer's feature maps for one image");
  sub->add_option("--model", a->model, "Saved model (.safetensors; a .json description shows untrained weights)")
      ->required();
  sub->add_option("--image", a->image, "PNG/JPEG/BMP image (default: the first test image of --data)")
      ->check(CLI::ExistingFile);
  sub->add_option("--data", a->data, "Data folder for the default image (default: search for CIFAR-10)");
  sub->add_option("--out", a->out, "PNG file to write")->required();
  sub->add_option("--scale", a->scale, "Size of the input tile in image pixels (default 2)")->check(CLI::Range(1, 32));
  return [a] {
    Sequential model = load_model(a->model);
    CNN_CHECK(model.compiled(), "'", a->model, "' has no input_shape");
    const Shape in = model.compile_options().input_shape;
    CNN_CHECK(in.size() == 3, "the model's input ", shape_str(in), " is not an image");
    Tensor x;
    std::string image_name;
    if (!a->image.empty()) {
      x = load_image(a->image, int(in[0]), int(in[1]), int(in[2]));
      image_name = fs::path(a->image).filename().string();
    } else {
      const TrainTest data = load_data_for(in, a->data, 1, 1);
      CNN_CHECK(data.test.size() > 0, "the data set has no test images; give --image");
      x = data.test.x.slice(0, 1);
      const int label = int(data.test.y.to_vector()[0]);
      image_name = "test image 0";
      if (label >= 0 && label < data.test.num_classes())
        image_name += " (" + data.test.class_names[size_t(label)] + ")";
    }
    const std::vector<Tensor> outs = model.layer_outputs(x);
    const auto weights = model.weights();
    std::vector<std::pair<std::string, Tensor>> maps;
    Tensor first_filters;
    for (size_t i = 0; i < model.size(); ++i) {
      const Layer& layer = model.layer(i);
      if (layer.type() != "Conv2D") continue;
      std::string name = layer.name.empty() ? "conv2d_" + std::to_string(maps.size() + 1) : layer.name;
      if (layer.activation() != Activation::Linear) name += " (" + to_string(layer.activation()) + ")";
      maps.emplace_back(name, outs[i]);
      if (first_filters.empty()) {
        const std::string prefix = "layers." + std::to_string(i) + ".";
        for (const auto& [wname, t] : weights)
          if (wname.starts_with(prefix) && wname.ends_with(".weight")) first_filters = t;
      }
    }
    CNN_CHECK(!maps.empty() && !first_filters.empty(), "'", a->model, "' has no Conv2D layer to visualize");
    // The picture: a title; the first conv layer's filters (tiles about 20 * scale pixels: a 5x5
    // kernel at scale 2 is 40 x 40), labelled "filters" and with their tiles lined up with the
    // feature maps'; then the input and every conv layer's feature maps.
    const int filter_scale = std::max(1, int(20 * a->scale / std::max<int64_t>(1, first_filters.dim(2))));
    const Image filters = filters_image(first_filters, filter_scale);
    const GridLayout fl = filters_layout(first_filters.shape(), filter_scale);
    const int label_x = feature_maps_layout(maps, a->scale, x)[0].origin_x;  // the feature maps' label column
    const int filters_x = label_x - fl.origin_x;
    const std::string title = fs::path(a->model).filename().string() + ": filters and feature maps for " + image_name;
    Image picture = stack_with_title(title, {{filters, filters_x}, {feature_maps_image(maps, a->scale, x), 0}});
    draw_text(picture, label_x - kPad, kMargin + text_height(kTitleSize) + fl.origin_y, "filters", colors::black,
              kTextSize, Align::Right);
    save_picture(picture, a->out,
                 std::to_string(first_filters.dim(0)) + " filters, " + std::to_string(maps.size()) +
                     " conv layers' feature maps");
    return 0;
  };
}

}  // namespace cnn::cli
