namespace VirtioSharp.Platform;

/// <summary>One cell of the demo: a device type on a transport in a DMA mode, probed, exercised and removed.</summary>
public sealed record DeviceRun(string Transport, string Mode, string Device, string Ops, bool Verified, bool Leaked, string Detail)
{
    /// <summary>The device worked and nothing leaked.</summary>
    public bool Ok => Verified && !Leaked;
}
