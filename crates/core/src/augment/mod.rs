//! Native executor of the CXformer multi-crop augmentation (docs/recipe.md §4).
//!
//! The TypeScript side draws every random parameter (seeded) and sends them as JSON ([`parse_crops`](params::parse_crops)); this module
//! only applies them, batched, on the training device (CPU or CUDA). Per crop, in torchvision's order, on [0, 1] floats:
//!
//! 1. RandomResizedCrop: the box is cut out of the uint8 image and resized to S×S with PyTorch's antialiased bicubic
//!    (`_upsample_bicubic2d_aa`, align_corners false, PIL-style kernel), then clamped to [0, 1]. A box that is already
//!    S×S is copied unchanged (PIL's `resize` also returns a copy when the size does not change).
//! 2. Horizontal flip.
//! 3. RandomAffine ([`affine_nearest`](ops::affine_nearest)): torchvision `F.affine` semantics, rotation about the image centre, then
//!    translation, uniform scale, no shear, nearest, fill 0.
//! 4. ColorJitter ([`adjust_brightness`](ops::adjust_brightness), [`adjust_contrast`](ops::adjust_contrast), [`adjust_saturation`](ops::adjust_saturation), [`adjust_hue`](ops::adjust_hue)) in the order
//!    sent, each with its own factor.
//! 5. RandomGrayscale: the identity here, because the crops are gray (one channel replicated to three).
//! 6. Gaussian blur ([`gaussian_blur`](ops::gaussian_blur)): 9×9, torchvision `gaussian_blur` semantics.
//! 7. Solarize ([`solarize`](ops::solarize)): threshold 128/255.
//! 8. Replication to three channels and normalisation ([`normalize`](ops::normalize)).
//!
//! Inputs are gray, so the pipeline keeps one channel until step 8. The colour functions also accept three channels
//! and then implement the RGB operations of torchvision's tensor backend; on one channel saturation and hue are the
//! identity (a gray pixel has HSV saturation 0, so a hue shift gives the same pixel back, and blending a gray image
//! with its own grayscale gives the image).
//!
//! Differences from the reference pipeline (PIL images in DINOv2): PIL rounds to uint8 after the resize and after
//! every colour operation, and `ImageEnhance.Contrast` rounds the gray mean to an integer level. Here everything
//! stays float32 from the crop onwards. PIL's nearest affine rounds ties upwards, `grid_sampler` rounds ties to even;
//! the geometry (centre, direction, translation) is otherwise the same.
pub mod multicrop;
pub mod ops;
pub mod params;
