# Input, params and resource functions of rules/container.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


from maskrcnn_pipeline.workflow.code_inputs import module_inputs
from maskrcnn_pipeline.workflow.config import images
from maskrcnn_pipeline.workflow.images import build_image, describe_image

#: Every image the config needs, by record name: what build_image or describe_image makes.
IMAGES = images(config)


def image_setting(key):
    """Input/params function: one setting (image, definition, base) of the image {image}."""
    return lambda wildcards: IMAGES[wildcards.image][key]


def images_built(build):
    """A wildcard constraint: the images the workflow builds (True) or only records (False)."""
    return one_of(name for name, entry in IMAGES.items() if entry["build"] == build)


#: The module these rules call from Snakemake's Python: its code (an input, ancient: editing
#: how Apptainer is called never rebuilds an image whose definition is unchanged).
IMAGES_MODULE = "maskrcnn_pipeline.workflow.images"
