namespace VirtioSharp.Net.Switch;

/// <summary>How a <see cref="NetSwitch"/> is built.</summary>
public sealed record NetSwitchOptions
{
    /// <summary>A name for logs and meters.</summary>
    public string Name { get; init; } = "sw0";
    /// <summary>Largest payload of a frame (Ethernet MTU): frames longer than MTU + 18 (Ethernet and VLAN headers) are dropped and counted.</summary>
    public int Mtu { get; init; } = 1500;
    /// <summary>MAC table slots (a power of two, at least 8): the most addresses learned at once; never grows.</summary>
    public int MacTableSize { get; init; } = 4096;
    /// <summary>How long a learned address is trusted without a frame from it (Linux bridge default: 300 s).</summary>
    public TimeSpan AgeingTime { get; init; } = TimeSpan.FromSeconds(300);
    /// <summary>Frames that may wait for one port's guest to take them; more are dropped and counted (a stalled guest holds at most this many buffers).</summary>
    public int QueueLength { get; init; } = 256;
    /// <summary>The clock for ageing (tests give their own).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}
