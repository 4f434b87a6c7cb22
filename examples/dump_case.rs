use culprit::adapters;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cases = adapters::list_cases(std::path::Path::new(&args[1])).unwrap();
    let c = cases.iter().find(|c| c.id == args[2]).unwrap();
    let inc = adapters::load_case(c).unwrap();
    let svc = &args[3];
    println!("analysis_start {} alert {}", inc.analysis_start, inc.alert.time);
    for s in inc.telemetry.metrics.iter().filter(|s| &s.service == svc) {
        let b = inc.baseline.as_ref().unwrap().metrics.iter().find(|b| b.service == s.service && b.metric == s.metric);
        let bv: Vec<String> = b.map(|b| b.points.iter().rev().take(12).rev().map(|p| format!("{:.3}", p.1)).collect()).unwrap_or_default();
        let cv: Vec<String> = s.points.iter().map(|p| format!("{:.3}", p.1)).collect();
        println!("{:<28} base[..] {} | cur {}", s.metric, bv.join(" "), cv.join(" "));
    }
}
