/** The DICOM writer lives in src (also used by the data benchmark); tests import it from here. */
export * from '../../src/image/dicom/writer.js';
