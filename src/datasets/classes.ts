/**
 * Class lists: the label columns of the sources and the downstream class lists of docs/recipe.md §5.1 (alphabetical order =
 * logit order in CXformer's configs).
 */

/** CheXpert's 14 observations, in the column order of train.csv (also MIMIC-CXR-JPG's chexpert/negbio files and BRAX). */
export const CHEXPERT_14: readonly string[] = [
  'No Finding',
  'Enlarged Cardiomediastinum',
  'Cardiomegaly',
  'Lung Opacity',
  'Lung Lesion',
  'Edema',
  'Consolidation',
  'Pneumonia',
  'Atelectasis',
  'Pneumothorax',
  'Pleural Effusion',
  'Pleural Other',
  'Fracture',
  'Support Devices',
];

/**
 * CXformer's CheXpert classes (docs/recipe.md §5.1). CXformer renames 'Pleural Effusion' to 'Effusion' (torchxrayvision's
 * name); the alphabetical order, and so the logit order, is the same under either name.
 */
export const CHEXPERT_5: readonly string[] = ['Atelectasis', 'Cardiomegaly', 'Consolidation', 'Edema', 'Pleural Effusion'];

/** NIH ChestX-ray14's 14 findings as spelled in `Finding Labels` (note 'Pleural_Thickening'). */
export const NIH_14: readonly string[] = [
  'Atelectasis',
  'Cardiomegaly',
  'Effusion',
  'Infiltration',
  'Mass',
  'Nodule',
  'Pneumonia',
  'Pneumothorax',
  'Consolidation',
  'Edema',
  'Emphysema',
  'Fibrosis',
  'Pleural_Thickening',
  'Hernia',
];

/** The 8 ChestX-ray8 classes CXformer evaluates on NIH (docs/recipe.md §5.1). */
export const NIH_8: readonly string[] = ['Atelectasis', 'Cardiomegaly', 'Effusion', 'Infiltration', 'Mass', 'Nodule', 'Pneumonia', 'Pneumothorax'];

/**
 * VinDr-CXR's 28 image-level label columns (22 local findings + 6 global diagnoses), as listed in CXformer's
 * cxr_data/datasets.py. The adapter does not rely on this list: it takes every column of the label file other than
 * `image_id` and `rad_id` as a label.
 */
export const VINDR_28: readonly string[] = [
  'Aortic enlargement',
  'Atelectasis',
  'Calcification',
  'Cardiomegaly',
  'Clavicle fracture',
  'Consolidation',
  'Edema',
  'Emphysema',
  'Enlarged PA',
  'ILD',
  'Infiltration',
  'Lung Opacity',
  'Lung cavity',
  'Lung cyst',
  'Mediastinal shift',
  'Nodule/Mass',
  'Pleural effusion',
  'Pleural thickening',
  'Pneumothorax',
  'Pulmonary fibrosis',
  'Rib fracture',
  'Other lesion',
  'COPD',
  'Lung tumor',
  'Pneumonia',
  'Tuberculosis',
  'Other diseases',
  'No finding',
];

/** CXformer's VinDr-CXR classes (docs/recipe.md §5.1, reported as macro AUPRC). */
export const VINDR_7: readonly string[] = [
  'Aortic enlargement',
  'Cardiomegaly',
  'Lung Opacity',
  'Pleural effusion',
  'Pleural thickening',
  'Pulmonary fibrosis',
  'Tuberculosis',
];

/** RSNA Pneumonia: one binary class (the adapter stores the patient-level `Target` under this name). */
export const RSNA_1: readonly string[] = ['Pneumonia'];

/** CheXmask structures, in the class-map order of docs/recipe.md §5.2 (1 left lung, 2 right lung, 3 heart; 0 background). */
export const CHEXMASK_STRUCTURES: readonly string[] = ['Left Lung', 'Right Lung', 'Heart'];
