"""napari plugin for lesionvol: review and correct serial ONFH lesion measurements."""
