namespace VirtioSharp.Net.Switch;

/// <summary>
/// The switch's forwarding database: MAC address → port, with the time it was last seen. Fixed size, allocated once
/// (open addressing over a short probe window, no deletion): a flood of source addresses overwrites the oldest entry
/// of a window instead of growing anything. Entries older than the ageing time are neither found nor kept over a new
/// one. Not thread-safe: <see cref="NetSwitch"/> calls it under its lock.
/// </summary>
internal sealed class MacTable
{
    /// <summary>Slots an address may occupy (from its hash on).</summary>
    public const int Window = 8;
    private const ulong InUse = 1UL << 63;
    private readonly ulong[] _keys;   // MAC (48 bits) | InUse; 0 = never used
    private readonly int[] _ports;
    private readonly long[] _seen;
    private readonly int _shift;
    private readonly long _ageTicks;

    /// <summary>A table of <paramref name="capacity"/> entries (a power of two, at least <see cref="Window"/>).</summary>
    public MacTable(int capacity, long ageTicks)
    {
        if (capacity < Window || (capacity & (capacity - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"MAC table size {capacity}: a power of two, at least {Window}");
        _keys = new ulong[capacity];
        _ports = new int[capacity];
        _seen = new long[capacity];
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)capacity);
        _ageTicks = ageTicks;
    }

    /// <summary>Slots (the most addresses it can hold).</summary>
    public int Capacity => _keys.Length;
    /// <summary>Live entries that replaced another live one (the table was full where the new address hashed).</summary>
    public long Evictions { get; private set; }

    private int Home(ulong mac) => (int)((mac * 0x9E3779B97F4A7C15UL) >> _shift);

    private bool Live(int slot, long now) => _keys[slot] != 0 && now - _seen[slot] <= _ageTicks;

    /// <summary>Records that <paramref name="mac"/> was seen on <paramref name="port"/> at <paramref name="now"/>.</summary>
    public void Learn(ulong mac, int port, long now)
    {
        int home = Home(mac), mask = _keys.Length - 1, victim = -1;
        long victimScore = long.MaxValue;
        for (int i = 0; i < Window; i++)
        {
            int s = (home + i) & mask;
            if (_keys[s] == (mac | InUse))
            {
                _ports[s] = port;
                _seen[s] = now;
                return;
            }
            // Empty first, then the least recently seen (an aged entry is always older than a live one).
            long score = _keys[s] == 0 ? long.MinValue : _seen[s];
            if (score < victimScore) { victimScore = score; victim = s; }
        }
        if (Live(victim, now)) Evictions++;
        _keys[victim] = mac | InUse;
        _ports[victim] = port;
        _seen[victim] = now;
    }

    /// <summary>The port <paramref name="mac"/> was last seen on, unless it is unknown or aged out.</summary>
    public bool TryLookup(ulong mac, long now, out int port)
    {
        int home = Home(mac), mask = _keys.Length - 1;
        for (int i = 0; i < Window; i++)
        {
            int s = (home + i) & mask;
            if (_keys[s] == (mac | InUse) && Live(s, now))
            {
                port = _ports[s];
                return true;
            }
        }
        port = -1;
        return false;
    }

    /// <summary>Entries not aged out at <paramref name="now"/> (walks the table: for stats, not per frame).</summary>
    public int LiveCount(long now)
    {
        int n = 0;
        for (int s = 0; s < _keys.Length; s++) if (Live(s, now)) n++;
        return n;
    }
}
