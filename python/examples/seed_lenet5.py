"""The seed's demo in Python: LeNet-5 on grayscale CIFAR-10 overfitting the first 5,000
training images (the recipe of docs/RESULTS.md row (a): SGD 0.01 with momentum 0.9, batch 32,
cosine schedule, 40 epochs), then the test accuracy and a training-curve PNG.

    python python/examples/seed_lenet5.py [--data DIR] [--epochs 40] [--out out/seed_lenet5]

The data set is found where the CLI looks (--data, $CNN_DATA, ./data, ../shared/data)."""
import argparse
import os
import time

from cnnfromscratch import (AveragePooling2D, CSVLogger, Conv2D, Dense, Flatten, Sequential, datasets,
                            plot_training_curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 binary folder (default: search as the CLI does)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--limit", type=int, default=5000, help="training images")
    parser.add_argument("--out", default="out/seed_lenet5", help="prefix of the .csv, .png and .safetensors written")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data(path=args.data, grayscale=True,
                                                                      limit=args.limit)
    model = Sequential([
        Conv2D(filters=6, kernel_size=5, strides=1, padding='valid', activation='relu'),
        AveragePooling2D(pool_size=2, strides=2),
        Conv2D(filters=16, kernel_size=5, strides=1, padding='valid', activation='relu'),
        AveragePooling2D(pool_size=2, strides=2),
        Flatten(), Dense(120, activation='relu'), Dense(84, activation='relu'), Dense(10, activation='softmax')])
    model.compile(optimizer='sgd', loss='cce', learning_rate=0.01, momentum=0.9, input_shape=[1, 32, 32])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, lr_schedule='cosine',
                        callbacks=[CSVLogger(args.out + ".csv")], verbose=2)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test)
    model.save(args.out + ".safetensors")
    plot_training_curves(args.out + ".csv", args.out + ".png", "LeNet-5 (grayscale), first 5,000 CIFAR-10 images")
    print(f"training accuracy {history.history['accuracy'][-1]:.4f} (loss {history.history['loss'][-1]:.4f}) "
          f"after {len(history.epoch)} epochs in {seconds:.1f} s ({seconds / len(history.epoch):.2f} s per epoch); "
          f"test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) on {len(y_test)} images")
    print(f"wrote {args.out}.csv, {args.out}.png, {args.out}.safetensors")


if __name__ == "__main__":
    main()
