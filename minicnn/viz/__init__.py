"""Visualization methods, one module per family; each is a short function over Network forward/backward.

The methods are the network's own backward pass, started from a chosen place with a chosen ReLU rule:
saliency = backward from a class score with rule "gradient"; guided backprop = rule "guided";
DeconvNet = backward from one activation with rule "deconvnet"; gradient ascent and DeepDream =
backward from an objective, repeated; CAM = a weighted sum of the last feature maps.
"""
