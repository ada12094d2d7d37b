namespace VirtioSharp.Platform;

/// <summary>How a scenario ended.</summary>
public enum ScenarioOutcome
{
    /// <summary>Every byte written came back and the disk holds it.</summary>
    Ok,
    /// <summary>I/O completed but data (or status) was wrong.</summary>
    Corrupt,
    /// <summary>Requests never completed: a guest would hang.</summary>
    Hang,
    /// <summary>The driver refused the device with a reason.</summary>
    Refused,
    /// <summary>A stale IOTLB entry let the device reach memory already unmapped.</summary>
    StaleAccess,
    /// <summary>The device could not use the memory it was given and signalled DEVICE_NEEDS_RESET.</summary>
    DeviceFailed,
}
