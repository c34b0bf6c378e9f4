"""Built-in backbones plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = ("vgg16", "resnet50", "inception_v3", "efficientnet_b0")
