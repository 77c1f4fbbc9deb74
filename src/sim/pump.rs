//! One association driven from one task: an outbound queue flushed while
//! receiving, plus one timer. Neither direction ever waits for the other, so
//! two simulators sending to each other at full speed cannot deadlock.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::transport::{Association, AssociationExt, Error, Message};

/// What the outbound message is, for the sent counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    Indication,
    Other,
}

/// Why [`Pump::next`] returned.
#[derive(Debug)]
pub(crate) enum Event {
    /// A message arrived.
    Message(Message),
    /// The peer shut down gracefully (nothing more will arrive).
    Closed,
    /// The association failed.
    Failed(Error),
    /// The timer set with [`Pump::set_timer`] expired.
    Timer,
    /// The outbound queue went below the caller's limit.
    Room,
}

pub(crate) struct Pump<A> {
    assoc: A,
    out: VecDeque<(Message, Tag)>,
    timer: Pin<Box<Sleep>>,
    timer_armed: bool,
    /// The first send failure. Receiving goes on after it (a peer that shut
    /// down may still have messages in flight towards us); later sends are dropped.
    send_error: Option<Error>,
    /// Messages dropped because sending had failed.
    pub dropped: u64,
    /// Messages taken by the transport.
    pub indications_sent: u64,
    pub indication_bytes: u64,
    pub others_sent: u64,
}

impl<A: Association> Pump<A> {
    pub fn new(assoc: A) -> Self {
        Pump {
            assoc,
            out: VecDeque::new(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_armed: false,
            send_error: None,
            dropped: 0,
            indications_sent: 0,
            indication_bytes: 0,
            others_sent: 0,
        }
    }

    /// Queue a message; it leaves while the caller waits in [`Self::next`].
    pub fn push(&mut self, msg: Message, tag: Tag) {
        if self.send_error.is_some() {
            self.dropped += 1;
        } else {
            self.out.push_back((msg, tag));
        }
    }

    /// The send failure, if sending has failed.
    pub fn send_error(&self) -> Option<&Error> {
        self.send_error.as_ref()
    }

    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Wake [`Self::next`] at `at` (`None`: no timer).
    pub fn set_timer(&mut self, at: Option<Instant>) {
        match at {
            Some(at) => {
                if !self.timer_armed || self.timer.deadline() != at {
                    self.timer.as_mut().reset(at);
                }
                self.timer_armed = true;
            }
            None => self.timer_armed = false,
        }
    }

    fn count(&mut self, tag: Tag, len: usize) {
        match tag {
            Tag::Indication => {
                self.indications_sent += 1;
                self.indication_bytes += len as u64;
            }
            Tag::Other => self.others_sent += 1,
        }
    }

    /// Send what is queued, receive, and wait for the timer, until one of them
    /// has something to report. A send failure is not an event (see
    /// [`Self::send_error`]); the receive side reports the end of the association. With `room_below = Some(n)` it also returns
    /// [`Event::Room`] once fewer than `n` messages are queued.
    pub fn next(&mut self, room_below: Option<usize>) -> impl Future<Output = Event> + '_ {
        poll_fn(move |cx| {
            while let Some((msg, tag)) = self.out.front() {
                match self.assoc.poll_send(cx, msg) {
                    Poll::Ready(Ok(())) => {
                        let (tag, len) = (*tag, msg.payload.len());
                        self.out.pop_front();
                        self.count(tag, len);
                    }
                    Poll::Ready(Err(e)) => {
                        self.dropped += self.out.len() as u64;
                        self.out.clear();
                        self.send_error = Some(e);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            match self.assoc.poll_recv(cx) {
                Poll::Ready(Ok(Some(m))) => return Poll::Ready(Event::Message(m)),
                Poll::Ready(Ok(None)) => return Poll::Ready(Event::Closed),
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                Poll::Pending => {}
            }
            if room_below.is_some_and(|n| self.out.len() < n) {
                return Poll::Ready(Event::Room);
            }
            if self.timer_armed && self.timer.as_mut().poll(cx).is_ready() {
                self.timer_armed = false;
                return Poll::Ready(Event::Timer);
            }
            Poll::Pending
        })
    }

    /// Send everything queued, for at most `limit`; then close gracefully
    /// (SHUTDOWN, never ABORT). Returns how many messages were dropped
    /// (still queued, or after a send failure).
    pub async fn close(&mut self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        // Time-out or failure: what is still queued is reported as dropped.
        let _ = tokio::time::timeout_at(deadline, async {
            while let Some((msg, tag)) = self.out.front() {
                let (tag, len) = (*tag, msg.payload.len());
                if self.assoc.send(msg).await.is_err() {
                    return;
                }
                self.out.pop_front();
                self.count(tag, len);
            }
        })
        .await;
        let _ = tokio::time::timeout(limit.max(Duration::from_millis(100)), self.assoc.shutdown())
            .await;
        self.dropped += self.out.len() as u64;
        self.out.clear();
        self.dropped
    }
}
