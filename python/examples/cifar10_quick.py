"""A better CIFAR-10 net from Python: models/cifar_cnn.json's VGG-style network and recipe
(docs/RESULTS.md row (c): Adam 1e-3, batch 64, cosine schedule, random flips and 2-pixel
translations, 12 epochs) on all 50,000 RGB training images, then the 10,000 test images.

    python python/examples/cifar10_quick.py [--data DIR] [--epochs 12] [--out out/cifar10_quick]

The data set is found where the CLI looks (--data, $CNN_DATA, ./data, ../shared/data)."""
import argparse
import os
import time

from cnnfromscratch import CSVLogger, Conv2D, Dense, Flatten, MaxPooling2D, Sequential, datasets, plot_training_curves


def conv(filters: int) -> Conv2D:
    return Conv2D(filters=filters, kernel_size=3, padding='same', activation='relu', kernel_initializer='he_uniform')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 binary folder (default: search as the CLI does)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--limit", type=int, default=0, help="training images (0: all 50,000)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default="out/cifar10_quick", help="prefix of the .csv, .png and .safetensors written")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data(path=args.data, limit=args.limit)
    model = Sequential([
        conv(32), conv(32), MaxPooling2D(pool_size=2),
        conv(64), conv(64), MaxPooling2D(pool_size=2),
        conv(128), MaxPooling2D(pool_size=2),
        Flatten(), Dense(128, activation='relu', kernel_initializer='he_uniform'), Dense(10, activation='softmax')])
    model.compile(optimizer='adam', loss='scce', learning_rate=0.001, input_shape=[3, 32, 32], device=args.device)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, lr_schedule='cosine',
                        augment={"flip": "random", "translate": 2}, callbacks=[CSVLogger(args.out + ".csv")],
                        verbose=2)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test)
    model.save(args.out + ".safetensors")
    plot_training_curves(args.out + ".csv", args.out + ".png", "cifar_cnn from Python, CIFAR-10")
    print(f"training accuracy {history.history['accuracy'][-1]:.4f} (loss {history.history['loss'][-1]:.4f}) "
          f"after {len(history.epoch)} epochs in {seconds:.1f} s ({seconds / len(history.epoch):.1f} s per epoch); "
          f"test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) on {len(y_test)} images")
    print(f"wrote {args.out}.csv, {args.out}.png, {args.out}.safetensors")


if __name__ == "__main__":
    main()
