using Microsoft.Extensions.Logging;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// A logger a front-end cannot flood: every line the peer can cause (a refused message, a ring start, a reconnect)
/// takes a token from a bucket of <c>burst</c> that refills at <c>perSecond</c>; lines without a token are counted and
/// reported in one line when tokens return. Critical lines always pass.
/// </summary>
internal sealed class RateLimitedLogger : ILogger
{
    private readonly ILogger inner;
    private readonly double perSecond, burst;
    private readonly object _lock = new();
    private double _tokens;
    private long _last = Environment.TickCount64;
    private long _suppressed;

    public RateLimitedLogger(ILogger inner, double perSecond, double burst)
    {
        (this.inner, this.perSecond, this.burst) = (inner, perSecond, burst);
        _tokens = burst;
    }

    public long Suppressed => Interlocked.Read(ref _suppressed);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

    public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!inner.IsEnabled(logLevel)) return;
        long dropped = 0;
        if (logLevel < LogLevel.Critical)
        {
            lock (_lock)
            {
                long now = Environment.TickCount64;
                _tokens = Math.Min(burst, _tokens + (now - _last) * perSecond / 1000.0);
                _last = now;
                if (_tokens < 1)
                {
                    _suppressed++;
                    return;
                }
                _tokens--;
                dropped = _suppressed;
                _suppressed = 0;
            }
        }
        if (dropped > 0) inner.LogWarning("{Count} log lines suppressed (more than {Rate}/s after a burst of {Burst})", dropped, perSecond, burst);
        inner.Log(logLevel, eventId, state, exception, formatter);
    }
}
