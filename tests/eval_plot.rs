//! The loss plot from a generated loss_log.csv: size, content, and tolerance of extra columns.

use pix2pix::report::plot::{plot_losses, read_loss_log, smooth, HEIGHT, WIDTH};
use std::collections::HashSet;
use std::path::Path;

fn write_log(path: &Path, extra_columns: bool, rows: usize) {
    let mut s = String::from("epoch,iters,images,G_GAN,G_L1,D_real,D_fake,lr,sec_per_iter,data_wait_s");
    if extra_columns {
        s += ",val_cosine,val_l1";
    }
    s.push('\n');
    for i in 0..rows {
        let t = i as f64;
        s += &format!(
            "{},{},{},{},{},{},{},2e-4,0.1,0.01",
            i / 10 + 1,
            i % 10,
            i * 4,
            0.8 + 0.3 * (t / 3.0).sin(),
            40.0 * (-t / 50.0).exp() + 5.0,
            0.5 + 0.1 * (t / 2.0).cos(),
            0.4 + 0.1 * (t / 5.0).sin()
        );
        if extra_columns {
            s += ",0.05,0.1";
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn plot_has_expected_size_and_coloured_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("loss_log.csv");
    let png = tmp.path().join("sub/loss.png");
    write_log(&csv, true, 200);
    // A line cut short, as when training is killed mid-write: skipped, not fatal.
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text += "21,3,800,0.9";
    std::fs::write(&csv, text).unwrap();
    plot_losses(&csv, &png).unwrap();

    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 50, "only {} colours: blank plot?", colours.len());
    // The smoothed D_fake curve is drawn in pure (214, 39, 40) red; G_L1 in (148, 103, 189).
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(count([214, 39, 40]) > 200, "no D_fake curve");
    assert!(count([148, 103, 189]) > 200, "no G_L1 curve");
    // The title is text in the top 25 rows: dark pixels there mean the embedded font rendered.
    let title_ink = (0..25)
        .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 128)
        .count();
    assert!(
        title_ink > 100,
        "no title text ({title_ink} dark pixels): font not rendering?"
    );
    // G_L1 is in the lower panel, D_fake in the upper one.
    let rows_with = |c: [u8; 3]| {
        img.enumerate_pixels()
            .filter(move |(_, _, p)| p.0 == c)
            .map(|(_, y, _)| y)
    };
    assert!(rows_with([148, 103, 189]).all(|y| y > HEIGHT / 2));
    assert!(rows_with([214, 39, 40]).all(|y| y < HEIGHT / 2));
}

#[test]
fn extra_columns_and_order_do_not_matter() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("a.csv");
    write_log(&csv, true, 12);
    let log = read_loss_log(&csv).unwrap();
    assert_eq!(log.images.len(), 12);
    assert_eq!(log.images[3], 12.0);
    // Reordered columns, by name.
    std::fs::write(&csv, "D_fake,images,G_L1,junk,D_real,G_GAN\n0.4,8,12.5,x,0.6,0.9\n").unwrap();
    let log = read_loss_log(&csv).unwrap();
    assert_eq!(log.images, vec![8.0]);
    assert_eq!(log.losses, [vec![0.9], vec![12.5], vec![0.6], vec![0.4]]);
}

#[test]
fn missing_column_and_empty_log_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("loss_log.csv");
    std::fs::write(&csv, "epoch,images,G_GAN,G_L1,D_real\n1,4,0.1,0.2,0.3\n").unwrap();
    let e = read_loss_log(&csv).unwrap_err().to_string();
    assert!(e.contains("D_fake") && e.contains("loss_log.csv"), "{e}");
    write_log(&csv, false, 0);
    let e = plot_losses(&csv, &tmp.path().join("x.png")).unwrap_err().to_string();
    assert!(e.contains("no loss rows"), "{e}");
}

#[test]
fn smoothing_starts_at_the_first_value_and_follows_a_step() {
    let mut v = vec![1.0; 100];
    v.extend(vec![3.0; 100]);
    let s = smooth(&v);
    assert_eq!(s[0], 1.0);
    assert!((s[99] - 1.0).abs() < 1e-12);
    assert!(s[101] > 1.0 && s[101] < 3.0);
    assert!((s[199] - 3.0).abs() < 0.01);
}
