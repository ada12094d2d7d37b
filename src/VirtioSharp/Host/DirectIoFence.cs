using System.Diagnostics;

namespace VirtioSharp.Host;

/// <summary>
/// Lets a transport that changes translations wait for the I/O that may still use the old ones. A device brackets
/// every I/O that got host addresses from <see cref="Memory.IDeviceMemory.MapForIo"/> with <see cref="Enter"/> /
/// <see cref="Exit"/>; <see cref="Wait"/> returns once every I/O entered before it was called has exited. Two epochs
/// (by parity) are enough because waits are serialised and each first drains what a timed-out wait left: an I/O counts
/// in the epoch it entered.
/// </summary>
public sealed class DirectIoFence
{
    private const int Stride = 16;   // two counters per queue, 128 bytes apart from the next queue's: no shared cache line
    private readonly long[] _counts;
    private long _epoch;
    private readonly object _waitLock = new();

    /// <summary>A fence for <paramref name="queues"/> queues.</summary>
    public DirectIoFence(int queues) => _counts = new long[Math.Max(queues, 1) * Stride];

    /// <summary>Before translating for an I/O on <paramref name="queue"/>; returns the token for <see cref="Exit"/>.</summary>
    public int Enter(int queue)
    {
        while (true)
        {
            int e = (int)(Volatile.Read(ref _epoch) & 1);
            Interlocked.Increment(ref _counts[queue * Stride + e]);
            // A wait that switched epochs between the read and the increment might have missed us: count again.
            if ((int)(Volatile.Read(ref _epoch) & 1) == e) return e;
            Interlocked.Decrement(ref _counts[queue * Stride + e]);
        }
    }

    /// <summary>The I/O entered with <paramref name="token"/> is over: nothing touches its host addresses any more.</summary>
    public void Exit(int queue, int token) => Interlocked.Decrement(ref _counts[queue * Stride + token]);

    /// <summary>I/O in flight on every queue, both epochs (diagnostics).</summary>
    public long InFlight
    {
        get
        {
            long n = 0;
            for (int q = 0; q < _counts.Length / Stride; q++) n += Volatile.Read(ref _counts[q * Stride]) + Volatile.Read(ref _counts[q * Stride + 1]);
            return n;
        }
    }

    /// <summary>
    /// Call after the translation change took effect: waits until the I/O entered before now has exited, up to
    /// <paramref name="timeout"/>, or until <paramref name="stalled"/> says the I/O cannot finish while this waits (its
    /// owner thread waits for this caller). False if it did not drain; the caller decides what to tell the peer.
    /// </summary>
    public bool Wait(TimeSpan timeout, Func<bool>? stalled = null)
    {
        lock (_waitLock)
        {
            long deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
            // The other parity takes no new entries until the flip, so what it holds is left over from a wait that
            // timed out: those are older than this call too, and must be gone before the parity is reused.
            int current = (int)(Volatile.Read(ref _epoch) & 1);
            if (!Drain(1 - current, deadline, stalled)) return false;
            Interlocked.Increment(ref _epoch);
            return Drain(current, deadline, stalled);
        }
    }

    private bool Drain(int parity, long deadline, Func<bool>? stalled)
    {
        var spin = new SpinWait();
        for (int q = 0; q < _counts.Length / Stride; q++)
        {
            while (Volatile.Read(ref _counts[q * Stride + parity]) > 0)
            {
                if (Stopwatch.GetTimestamp() > deadline || stalled?.Invoke() == true) return false;
                if (spin.Count < 20) spin.SpinOnce(); else Thread.Sleep(1);
            }
        }
        return true;
    }
}
