//! Debug helper: prints the triage timeline of one dataset case.
use culprit::{adapters, report, triage};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cases = adapters::list_cases(std::path::Path::new(&args[1])).unwrap();
    let c = cases.iter().find(|c| c.id.ends_with(&args[2])).unwrap();
    let inc = adapters::load_case(c).unwrap();
    let t = triage::triage(&inc, &triage::Config::default());
    let r = report::build(&inc, &t);
    println!("truth {:?}", c.truth);
    for rc in &r.root_causes { println!("{} {} {} {:.3} {}", rc.rank, rc.service, rc.indicator, rc.confidence, rc.explained); }
    for e in &r.timeline { println!("{} {} {:?} {} {:.1} {:.3} {}", &e.time[11..19], e.service, e.source, e.indicator, e.score, e.mass, e.evidence.chars().take(110).collect::<String>()); }
}
