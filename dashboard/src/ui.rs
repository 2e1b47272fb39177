//! Drawing a [`Snapshot`] with ratatui: header, per-core CPU bars, stage table, latency
//! spans and sparkline, network, temperature, key help. Below [`MIN_FULL`] the view falls
//! back to a few lines of text; a zero-size area draws nothing. Pure: draws into a buffer.

use crate::model::{Snapshot, StreamView};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Gauge, Paragraph, Row, Sparkline, Table, Widget, Wrap,
};

/// Smallest area (width, height) for the full layout.
pub const MIN_FULL: (u16, u16) = (60, 24);

/// What has focus for the arrow keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// The stage table.
    #[default]
    Stages,
    /// The network interface.
    Interfaces,
}

/// Interaction state.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Where the arrow keys go.
    pub focus: Focus,
    /// Selected stage row.
    pub stage: usize,
    /// Selected interface (None: the one the route to the receiver uses).
    pub iface: Option<usize>,
    /// Updates paused.
    pub paused: bool,
    /// Help shown.
    pub help: bool,
}

impl View {
    /// Moves the selection by `d` within the focused list of `snap`.
    pub fn step(&mut self, snap: &Snapshot, d: i64) {
        let wrap = |i: usize, n: usize| {
            if n == 0 {
                0
            } else {
                ((i as i64 + d).rem_euclid(n as i64)) as usize
            }
        };
        match self.focus {
            Focus::Stages => {
                let n = snap.stream.as_ref().map(|s| s.stages.len()).unwrap_or(0);
                self.stage = wrap(self.stage, n);
            }
            Focus::Interfaces => {
                let cur = self.iface.or(snap.route_interface).unwrap_or(0);
                self.iface = Some(wrap(cur, snap.interfaces.len()));
            }
        }
    }

    /// Tab: the other focus.
    pub fn toggle_focus(&mut self) {
        self.focus = match self.focus {
            Focus::Stages => Focus::Interfaces,
            Focus::Interfaces => Focus::Stages,
        };
    }
}

fn header_line(snap: &Snapshot, view: &View) -> Line<'static> {
    let paused = if view.paused { " [PAUSED]" } else { "" };
    match &snap.stream {
        Some(s) => {
            let prof = if s.profile.is_empty() {
                String::new()
            } else {
                format!("  profile {}", s.profile)
            };
            Line::from(vec![
                Span::styled("vr-stream", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    " -> {}  {}x{}@{}  {} kbit/s{}  up {}{}",
                    s.destination,
                    s.width,
                    s.height,
                    s.fps,
                    s.encoder.bitrate_kbps,
                    prof,
                    uptime(s.uptime_s),
                    paused
                )),
            ])
        }
        None => Line::from(vec![
            Span::styled(
                "waiting for vr-stream",
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                " ({}): {}{}",
                snap.instance,
                snap.waiting.as_deref().unwrap_or(""),
                paused
            )),
        ]),
    }
}

fn uptime(s: u64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn total(s: &StreamView) -> Option<(f64, f64)> {
    s.latency
        .iter()
        .find(|l| l.name == "total")
        .map(|l| (l.p50_ms, l.p99_ms))
}

/// Draws the whole dashboard into `buf` over `area`.
pub fn draw(area: Rect, buf: &mut Buffer, snap: &Snapshot, view: &View) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    if area.width < MIN_FULL.0 || area.height < MIN_FULL.1 {
        compact(area, buf, snap, view);
    } else {
        full(area, buf, snap, view);
    }
    if view.help {
        help(area, buf);
    }
}

/// The few-lines view for small terminals.
pub fn compact(area: Rect, buf: &mut Buffer, snap: &Snapshot, view: &View) {
    let mut lines = vec![header_line(snap, view)];
    if let Some(s) = &snap.stream {
        if let Some((p50, p99)) = total(s) {
            lines.push(Line::raw(format!("total p50 {p50:.1} p99 {p99:.1} ms")));
        }
        // Capture -> decoded on the viewer page (the headset), when one reported.
        if let Some((p50, p99)) = s
            .page
            .as_ref()
            .and_then(|p| p.report.latency_p50_ms.zip(p.report.latency_p99_ms))
        {
            lines.push(Line::raw(format!("page p50 {p50:.1} p99 {p99:.1} ms")));
        }
        lines.push(Line::raw(format!(
            "fps {}",
            s.stages
                .iter()
                .map(|st| format!("{} {:.0}", &st.name[..3], st.fps))
                .collect::<Vec<_>>()
                .join(" ")
        )));
        let drops: u64 = s.stages.iter().map(|st| st.drops).sum();
        lines.push(Line::raw(format!(
            "drops {drops} restarts {}",
            s.stages.iter().map(|st| st.restarts).sum::<u64>()
        )));
    }
    lines.push(Line::raw("q quit  ? help"));
    Paragraph::new(lines).render(area, buf);
}

fn full(area: Rect, buf: &mut Buffer, snap: &Snapshot, view: &View) {
    let cpu_rows = snap.cpus.len().min(8) as u16;
    let stage_rows = snap
        .stream
        .as_ref()
        .map(|s| s.stages.len())
        .unwrap_or(1)
        .max(1) as u16;
    let [head, top, stages, lat, net, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(cpu_rows.max(4) + 2),
        Constraint::Length(stage_rows + 4),
        Constraint::Length(8),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    Paragraph::new(header_line(snap, view)).render(head, buf);
    let [cpu_area, sys_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
    cpus(cpu_area, buf, snap);
    system(sys_area, buf, snap);
    stage_table(stages, buf, snap, view);
    latency(lat, buf, snap);
    network(net, buf, snap, view);
    Paragraph::new(Line::styled(
        "q quit  p pause  tab focus stages/interface  up/down select  ? help",
        Style::default().fg(Color::DarkGray),
    ))
    .render(foot, buf);
}

fn cpus(area: Rect, buf: &mut Buffer, snap: &Snapshot) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" CPU (* isolated) ");
    let inner = block.inner(area);
    block.render(area, buf);
    for (i, c) in snap.cpus.iter().take(inner.height as usize).enumerate() {
        let row = Rect {
            y: inner.y + i as u16,
            height: 1,
            ..inner
        };
        let [label, bar] =
            Layout::horizontal([Constraint::Length(7), Constraint::Min(1)]).areas(row);
        Paragraph::new(format!("cpu{}{}", c.id, if c.isolated { "*" } else { " " }))
            .render(label, buf);
        let color = if c.usage_pct > 90.0 {
            Color::Red
        } else if c.isolated {
            Color::Cyan
        } else {
            Color::Green
        };
        Gauge::default()
            .gauge_style(Style::default().fg(color))
            .ratio((c.usage_pct / 100.0).clamp(0.0, 1.0))
            .label(format!("{:.0}%", c.usage_pct))
            .render(bar, buf);
    }
}

fn system(area: Rect, buf: &mut Buffer, snap: &Snapshot) {
    let mut lines = vec![
        Line::raw(format!(
            "temperature {}",
            snap.temperature_c
                .map(|t| format!("{t:.1} °C"))
                .unwrap_or_else(|| "n/a".into())
        )),
        Line::raw(format!(
            "throttling  {}",
            snap.throttled.as_deref().unwrap_or("n/a")
        )),
    ];
    if let Some(s) = &snap.stream {
        let e = &s.encoder;
        lines.push(Line::raw(format!(
            "encoder {:.0}/{} kbit/s",
            e.measured_kbps, e.bitrate_kbps
        )));
        lines.push(Line::raw(format!(
            "  IDR {}  last {} B  QP {}",
            e.idr,
            e.last_bytes,
            if e.last_qp >= 0 {
                e.last_qp.to_string()
            } else {
                "n/a".into()
            }
        )));
    }
    Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(" system "))
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

fn stage_table(area: Rect, buf: &mut Buffer, snap: &Snapshot, view: &View) {
    let block = Block::default().borders(Borders::ALL).title(" stages ");
    let Some(s) = &snap.stream else {
        Paragraph::new(format!(
            "waiting for vr-stream: {}",
            snap.waiting.as_deref().unwrap_or("")
        ))
        .block(block)
        .wrap(Wrap { trim: true })
        .render(area, buf);
        return;
    };
    let header = Row::new([
        "stage", "state", "pid", "cpu%", "rss MB", "cpus", "policy", "fps", "drops", "hb ms",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = s.stages.iter().enumerate().map(|(i, st)| {
        let selected = view.focus == Focus::Stages && view.stage == i;
        let style = match (selected, st.state) {
            (true, _) => Style::default().add_modifier(Modifier::REVERSED),
            (_, "failed") | (_, "retrying") => Style::default().fg(Color::Red),
            _ => Style::default(),
        };
        Row::new(vec![
            Cell::from(st.name),
            Cell::from(st.state),
            Cell::from(st.pid.to_string()),
            Cell::from(format!("{:.0}", st.cpu_pct)),
            Cell::from(format!("{:.1}", st.rss_kb as f64 / 1024.0)),
            Cell::from(st.affinity.clone()),
            Cell::from(st.policy.clone()),
            Cell::from(format!("{:.1}", st.fps)),
            Cell::from(st.drops.to_string()),
            Cell::from(
                st.heartbeat_age_ms
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(12),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let inner = block.inner(area);
    block.render(area, buf);
    let [table_area, detail] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    Widget::render(Table::new(rows, widths).header(header), table_area, buf);
    if let Some(st) = s.stages.get(view.stage) {
        let text = match &st.error {
            Some(e) => format!("{}: {e}", st.name),
            None => format!(
                "{}: restarts {}, locked {} MB",
                st.name,
                st.restarts,
                st.vmlck_kb / 1024
            ),
        };
        Paragraph::new(text).render(detail, buf);
    }
}

fn latency(area: Rect, buf: &mut Buffer, snap: &Snapshot) {
    let Some(s) = &snap.stream else {
        Block::default()
            .borders(Borders::ALL)
            .title(" latency ")
            .render(area, buf);
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Length(34), Constraint::Min(10)]).areas(area);
    let target = s.target_ms as f64;
    let rows = s.latency.iter().map(|l| {
        let over = l.name == "total" && l.p99_ms > target;
        Row::new(vec![
            l.name.to_string(),
            format!("{:.2}", l.p50_ms),
            format!("{:.2}", l.p99_ms),
        ])
        .style(if over {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        })
    });
    Widget::render(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(9),
            ],
        )
        .header(
            Row::new(["span", "p50 ms", "p99 ms"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" latency, last {} frames ", s.window_frames)),
        ),
        left,
        buf,
    );
    let title = match total(s) {
        Some((_, p99)) => format!(
            " capture -> last packet, µs (target {} ms, p99 {p99:.2}) ",
            s.target_ms
        ),
        None => " capture -> last packet, µs ".into(),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(right);
    block.render(right, buf);
    let n = inner.width as usize;
    let data = &s.recent_total_us[s.recent_total_us.len().saturating_sub(n)..];
    Sparkline::default()
        .data(data)
        .style(Style::default().fg(Color::Cyan))
        .render(inner, buf);
}

fn network(area: Rect, buf: &mut Buffer, snap: &Snapshot, view: &View) {
    let idx = view
        .iface
        .or(snap.route_interface)
        .or(if snap.interfaces.is_empty() {
            None
        } else {
            Some(0)
        });
    let mut lines = Vec::new();
    if let Some(i) = idx.and_then(|i| snap.interfaces.get(i)) {
        let mark = if Some(idx.unwrap()) == snap.route_interface {
            " (route to receiver)"
        } else {
            ""
        };
        let sel = if view.focus == Focus::Interfaces {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![Span::styled(
            format!("{}{mark}", i.name),
            sel,
        )]));
        lines.push(Line::raw(format!(
            "tx {:.2} Mbit/s {:.0} pkt/s  rx {:.2} Mbit/s  totals tx {} B / {} pkt, rx {} B  errors {} drops {}",
            i.tx_bps * 8.0 / 1e6,
            i.tx_pps,
            i.rx_bps * 8.0 / 1e6,
            i.tx_bytes,
            i.tx_packets,
            i.rx_bytes,
            i.errors,
            i.dropped
        )));
    }
    if let Some(s) = &snap.stream {
        let n = &s.net;
        lines.push(Line::raw(format!(
            "stream: {:.0} pkt/s, {} packets, {} sendmmsg, send errors {}, would-block drops {}",
            n.pps, n.packets, n.batches, n.send_errors, n.wouldblock_drops
        )));
        lines.push(Line::raw(format!(
            "RTCP: {}",
            s.rtcp.as_deref().unwrap_or(
                "no receiver reports (loss, jitter, RTT show here once a receiver sends RTCP)"
            )
        )));
        if let Some(d) = &s.detector {
            lines.push(Line::raw(format!("detect: {d}")));
        }
        if let Some(p) = &s.page {
            lines.push(Line::raw(format!("page: {}", p.text())));
            for v in &p.list {
                lines.push(Line::raw(format!("  viewer {}", v.text())));
            }
        }
    }
    Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(" network "))
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

fn help(area: Rect, buf: &mut Buffer) {
    let w = area.width.min(50);
    let h = area.height.min(10);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    Clear.render(r, buf);
    Paragraph::new(vec![
        Line::raw("q / Esc    quit"),
        Line::raw("p          pause / resume updates"),
        Line::raw("tab        focus stages or network interface"),
        Line::raw("up / down  select a stage or an interface"),
        Line::raw("?          this help"),
        Line::raw("cpu* = isolated CPU; hb = heartbeat age"),
    ])
    .block(Block::default().borders(Borders::ALL).title(" help "))
    .render(r, buf);
}
