using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace VirtioSharp.Host;

/// <summary>
/// Device-initiated work for one queue, handed from any thread to the queue's owner thread: a coalescing wake flag, a
/// one-shot deadline, posted actions and polled event sources. Only the owner thread takes work out.
/// </summary>
internal sealed class QueueMailbox
{
    private readonly ConcurrentQueue<Action> _posted = new();
    private readonly object _sourcesLock = new();
    private int _wake;
    private long _deadline = long.MaxValue;   // Stopwatch timestamp of the next timed wake
    private DeviceEventSource[] _sources = [];

    /// <summary>Changes whenever the set of event sources changes, so pollers rebuild their fd list only then.</summary>
    public int SourcesVersion { get; private set; }
    public DeviceEventSource[] Sources => Volatile.Read(ref _sources);

    public void RequestWake() => Volatile.Write(ref _wake, 1);

    public void Post(Action work) => _posted.Enqueue(work);

    /// <summary>Keeps the earliest of the pending deadline and <paramref name="delay"/> from now.</summary>
    public void WakeAt(TimeSpan delay)
    {
        long at = Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);
        long cur;
        while (at < (cur = Interlocked.Read(ref _deadline)) && Interlocked.CompareExchange(ref _deadline, at, cur) != cur) { }
    }

    /// <summary>Milliseconds until the timed wake (-1: none), for a poll timeout.</summary>
    public int MillisecondsToDeadline()
    {
        long d = Interlocked.Read(ref _deadline);
        if (d == long.MaxValue) return -1;
        long left = d - Stopwatch.GetTimestamp();
        return left <= 0 ? 0 : (int)Math.Min(int.MaxValue, left * 1000 / Stopwatch.Frequency + 1);
    }

    /// <summary>Owner thread: runs posted work and returns whether a wake (flag or due deadline) is pending; clears both.</summary>
    public bool TakeWork()
    {
        while (_posted.TryDequeue(out var work)) work();
        bool woke = Interlocked.Exchange(ref _wake, 0) != 0;
        long d = Interlocked.Read(ref _deadline);
        if (d != long.MaxValue && d <= Stopwatch.GetTimestamp() && Interlocked.CompareExchange(ref _deadline, long.MaxValue, d) == d) woke = true;
        return woke;
    }

    /// <summary>True if anything is waiting for the owner thread (posted work, a wake, a due deadline).</summary>
    public bool HasWork => !_posted.IsEmpty || Volatile.Read(ref _wake) != 0 || MillisecondsToDeadline() == 0;

    public DeviceEventSource Add(SafeHandle handle, Action onReadable)
    {
        var s = new DeviceEventSource(this, handle, onReadable);
        lock (_sourcesLock)
        {
            _sources = [.. _sources, s];
            SourcesVersion++;
        }
        return s;
    }

    public void Remove(DeviceEventSource s)
    {
        lock (_sourcesLock)
        {
            int i = Array.IndexOf(_sources, s);
            if (i < 0) return;
            _sources = [.. _sources.AsSpan(0, i), .. _sources.AsSpan(i + 1)];
            SourcesVersion++;
        }
    }

    /// <summary>Device reset: forget all work and sources.</summary>
    public void Clear()
    {
        while (_posted.TryDequeue(out _)) { }
        Volatile.Write(ref _wake, 0);
        Interlocked.Exchange(ref _deadline, long.MaxValue);
        lock (_sourcesLock)
        {
            _sources = [];
            SourcesVersion++;
        }
    }
}
