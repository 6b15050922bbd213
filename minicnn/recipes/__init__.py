"""Recipes: the programs that made the shipped weights and the measured tables, inside the package so
that they run after a regular `pip install .`.

    python -m minicnn.recipes.train_shapes --help        train shapes_cam / shapes_vgg (`minicnn train shapes`)
    python -m minicnn.recipes.train_seg --help           train shapes_seg (per-pixel classes; resumable)
    python -m minicnn.recipes.finetune_colour --help     fine-tune shapes_vgg to colours; its units before and after
    python -m minicnn.recipes.unique_detectors --help    unique detectors per network, by concept category
    python -m minicnn.recipes.checkerboard --help        the checkerboard of transposed convolutions, counted
    python -m minicnn.recipes.shape_codes --help         an autoencoder that draws shapes from a code
    python -m minicnn.recipes.pointing_game --help       the pointing game on held-out shapes images
    python -m minicnn.recipes.evaluate --help            sanity checks and faithfulness (`minicnn evaluate`)
    python -m minicnn.recipes.class_models --help        is each class model of shapes_vgg its class?
    python -m minicnn.recipes.bench --help               minicnn against PyTorch, each alone (`minicnn bench`)
    python -m minicnn.recipes.weight_loading --help      VGG16 from each weight format: time and peak memory
    python -m minicnn.recipes.select_shapes_vgg --help   retrained shapes_vgg networks measured side by side
    python -m minicnn.recipes.fetch_weights --help       convert torchvision's AlexNet / VGG16 weights
    python -m minicnn.recipes.compile_time --help        the Numba kernels' first-call compile time
    python -m minicnn.recipes.render_lessons --help      the lessons as Markdown pages (the docs build runs it)

Each is a module with a `main(argv=None)`; the results pages in docs/ name the command that wrote them.
"""
