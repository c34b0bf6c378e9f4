"""Stand-in for *your own* training code: train examples/my_model.py's network and save its weights.

Nothing here is voldefense-specific except the dataset (voldefense's offline synthetic shapes, so the example
needs no download). With your own model you skip this step: you already have ``model.state_dict()`` saved.

    python -m examples.train_my_model --out my_model.pt       # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from examples.my_model import small_resnet
from voldefense.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="my_model.pt", help="where to save the state dict")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=2000)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_dataset("synthetic", split="train", train_size=args.train_size)
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    model = small_resnet(num_classes=len(data.classes), width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(args.epochs):
        total, correct, seen = 0.0, 0, 0
        for images, labels in loader:
            logits = model(images)
            loss = nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        print(f"epoch {epoch + 1}: loss {total / seen:.3f}, train accuracy {correct / seen:.3f}")
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
