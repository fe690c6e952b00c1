// placeholder until the vectors module lands
