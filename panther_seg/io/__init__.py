"""Reading and verifying images (files and DICOM series), writing outputs atomically (images and DICOM SEG), and where each output goes."""
